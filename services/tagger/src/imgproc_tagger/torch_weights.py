"""Read a legacy (pre-1.6, non-zip) torch `state_dict` file into numpy arrays, without torch.

The legacy format is a run of pickles followed by raw storage bytes:

1. the magic number, 2. the protocol version (1001), 3. system info (endianness, type sizes),
4. the object itself, whose tensors refer to storages by persistent id,
5. the list of storage keys in the order their bytes follow; then, per storage, an int64 element
   count and the elements.

Unpickling is restricted to the handful of globals a state dict needs (an `OrderedDict`, the tensor
rebuild function and storage types), so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class WeightsError(Exception):
    """The file is not a readable legacy torch state dict."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray[Any, Any] | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray[Any, Any]:
        data = self.storage.data
        if data is None:
            raise WeightsError(f"storage {self.storage.key} has no data")
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
        )
        return np.array(view)  # a compact copy, independent of the storage buffer


def _rebuild_tensor(
    storage: _StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *_ignored: Any,
) -> _TensorRef:
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict needs; everything else is refused."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise WeightsError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsError("storage views are not supported")
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"unexpected storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _StorageRef(str(key), storage_type.dtype, int(numel))
        return self.storages[key]


class _PlainUnpickler(pickle.Unpickler):
    """The header pickles hold only ints, strings and dicts: no global is ever needed."""

    def find_class(self, module: str, name: str) -> Any:
        raise WeightsError(f"refusing to load {module}.{name} from a weights file header")


def _load_plain(file: BinaryIO) -> Any:
    return _PlainUnpickler(file).load()


def read_state_dict(source: Path | bytes) -> dict[str, np.ndarray[Any, Any]]:
    """Read a legacy torch `state_dict` file into `{name: numpy array}`.

    Raises `WeightsError` for anything that is not such a file (zip-format checkpoints included).
    """
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    if raw[:2] == b"PK":
        raise WeightsError("a zip-format torch checkpoint; only the legacy format is supported")
    file = io.BytesIO(raw)
    try:
        if _load_plain(file) != _MAGIC_NUMBER:
            raise WeightsError("not a legacy torch file (bad magic number)")
        if _load_plain(file) != _PROTOCOL_VERSION:
            raise WeightsError("unsupported torch file protocol version")
        sys_info = _load_plain(file)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise WeightsError("only little-endian weights files are supported")
        unpickler = _StateDictUnpickler(file)
        state = unpickler.load()
        keys = _load_plain(file)
    except WeightsError:
        raise
    except Exception as exc:  # any pickle damage: EOFError, UnpicklingError, ValueError, ...
        raise WeightsError(f"unreadable weights file: {type(exc).__name__}: {exc}") from exc

    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsError("the weights file does not hold a state dict")
    for key in keys:
        storage = unpickler.storages.get(key)
        if storage is None:
            raise WeightsError(f"storage {key} is listed but never used")
        header = file.read(8)
        if len(header) != 8:
            raise WeightsError("the weights file is truncated")
        (numel,) = struct.unpack("<q", header)
        nbytes = numel * storage.dtype.itemsize
        payload = file.read(nbytes)
        if numel != storage.numel or len(payload) != nbytes:
            raise WeightsError(f"storage {key} is truncated or has the wrong size")
        storage.data = np.frombuffer(payload, dtype=storage.dtype)

    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise WeightsError(f"entry {name!r} is not a tensor")
        arrays[str(name)] = value.materialize()
    return arrays
