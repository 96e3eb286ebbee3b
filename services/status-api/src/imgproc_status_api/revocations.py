"""Signed-out tokens: a denylist of token ids (`jti`) until the tokens expire.

A token is a signed JWT, valid until its `exp` wherever it is presented, so signing out must be
remembered server-side. The ids live in DynamoDB, so every task of the API refuses a token that
any of them signed out: in the albums table beside its guards (key `revoked#{jti}`: no album id
contains `#`, and an item without `owner` is in no index), each with `expires_at` (epoch
seconds, the token's own expiry), after which it is ignored and may be deleted (the attribute to
name as the table's TTL). The local snapshot keeps them across restarts with the albums.

Each task remembers what it revoked or found revoked (until the expiry), and a "not revoked"
answer for `recheck_s`: a token signed out through another task is refused there within that
time, one through this task at once, and a busy client costs one read per token per `recheck_s`.
"""

from __future__ import annotations

import time
from typing import Any

from imgproc_shared.logging import get_logger

log = get_logger()

REVOKED_PREFIX = "revoked#"
# Both caches are bounded: past this many entries the expired (or stale) ones are dropped, and
# if that is not enough the oldest.
_CACHE_LIMIT = 10_000


class TokenRevocations:
    def __init__(self, dynamodb: Any, table: str, *, recheck_s: float = 2.0) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._recheck_s = recheck_s
        self._revoked: dict[str, float] = {}  # token id -> epoch seconds it expires
        self._not_revoked: dict[str, float] = {}  # token id -> monotonic time of the last read

    async def revoke(self, token_id: str, expires_at: int) -> None:
        """Refuse `token_id` from now until `expires_at` (epoch seconds), in every task."""
        await self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "album_id": {"S": REVOKED_PREFIX + token_id},
                "expires_at": {"N": str(int(expires_at))},
            },
        )
        self._revoked[token_id] = float(expires_at)
        self._not_revoked.pop(token_id, None)
        _prune(self._revoked, time.time())
        log.info("token revoked", token_id=token_id, expires_at=expires_at)

    async def is_revoked(self, token_id: str) -> bool:
        now = time.time()
        expires = self._revoked.get(token_id)
        if expires is not None:
            return expires > now
        checked = self._not_revoked.get(token_id)
        if checked is not None and time.monotonic() - checked < self._recheck_s:
            return False
        item = (
            await self._dynamodb.get_item(
                TableName=self._table,
                Key={"album_id": {"S": REVOKED_PREFIX + token_id}},
                ConsistentRead=True,
            )
        ).get("Item")
        if item is not None:
            expires = float(item.get("expires_at", {}).get("N", "0"))
            if expires > now:
                self._revoked[token_id] = expires
                _prune(self._revoked, now)
                return True
        self._not_revoked[token_id] = time.monotonic()
        _prune(self._not_revoked, time.monotonic() - self._recheck_s)
        return False


def _prune(cache: dict[str, float], older_than: float) -> None:
    if len(cache) <= _CACHE_LIMIT:
        return
    for key in [k for k, v in cache.items() if v <= older_than]:
        del cache[key]
    while len(cache) > _CACHE_LIMIT:
        del cache[next(iter(cache))]
