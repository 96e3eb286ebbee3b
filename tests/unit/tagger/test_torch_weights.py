"""The legacy torch pickle reader: real weights in, only arrays out, hostile files refused."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from imgproc_tagger.classifier import packaged_weights_path
from imgproc_tagger.torch_weights import WeightsError, read_state_dict

MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}


def legacy_file(body: bytes, keys: list[str], storages: list[bytes]) -> bytes:
    """A legacy torch file around a hand-made object pickle."""
    out = io.BytesIO()
    for header in (MAGIC, 1001, SYS_INFO):
        pickle.dump(header, out, protocol=2)
    out.write(body)
    pickle.dump(keys, out, protocol=2)
    for storage in storages:
        out.write(struct.pack("<q", len(storage) // 4))
        out.write(storage)
    return out.getvalue()


def test_reads_the_shipped_efficientnet_weights() -> None:
    state = read_state_dict(packaged_weights_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    # Real trained values, not zeros: BN variances are never negative, weights vary.
    assert (state["_bn0.running_var"] >= 0).all() and state["_bn0.running_var"].mean() > 0.1
    assert float(np.abs(state["_fc.weight"]).mean()) > 1e-3


def test_a_tensor_view_with_offset_and_stride_is_rebuilt() -> None:
    # A 2x2 tensor viewing elements 1.. of a 6-element storage with strides (3, 1).
    storage = np.arange(6, dtype="<f4").tobytes()
    body = (
        b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w"
        b"ctorch._utils\n_rebuild_tensor_v2\n("
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06Nt"
        b"QK\x01K\x02K\x02\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)RtRu."
    )
    state = read_state_dict(legacy_file(body, ["0"], [storage]))
    np.testing.assert_array_equal(state["w"], [[1.0, 2.0], [4.0, 5.0]])


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_a_pickle_that_would_run_code_is_refused() -> None:
    body = pickle.dumps({"w": _Exploit()}, protocol=2)
    with pytest.raises(WeightsError, match="refusing to load"):
        read_state_dict(legacy_file(body, [], []))


@pytest.mark.parametrize("cut", [10, 5000, 18_000_000])
def test_a_truncated_file_is_a_clear_error(cut: int) -> None:
    data = packaged_weights_path().read_bytes()[:cut]
    with pytest.raises(WeightsError):
        read_state_dict(data)


def test_a_zip_checkpoint_or_random_bytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="zip-format"):
        read_state_dict(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(WeightsError):
        read_state_dict(os.urandom(4096))
