"""Checksums S3 keeps for an object: read them instead of the object where they are whole."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any


def stored_sha256(head: Mapping[str, Any]) -> str | None:
    """The object's SHA-256 (hex) as S3 stored and verified it on upload, when it is the hash of
    the whole object.

    A multipart upload stores a checksum of the part checksums instead: AWS marks it `COMPOSITE`
    and suffixes `-N`; moto 5.2.5 does neither, so the multipart ETag (`…-N`) is checked too.
    """
    value = head.get("ChecksumSHA256")
    if not value or "-" in value:
        return None
    if head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    if "-" in str(head.get("ETag", "")).strip('"'):
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == hashlib.sha256().digest_size else None
