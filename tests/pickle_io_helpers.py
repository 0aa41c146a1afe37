"""Shared helpers for the pickle_io tests: torch <-> raw bytes, without trusting pickle_io."""

from __future__ import annotations

import numpy as np
import torch

# Dtypes both torch and pickle_io know; the legacy format carries only the typed-storage ones.
TORCH_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128,
    torch.uint16, torch.uint32, torch.uint64, torch.float8_e5m2, torch.float8_e4m3fn,
    torch.float8_e5m2fnuz, torch.float8_e4m3fnuz, torch.float8_e8m0fnu,
]
LEGACY_DTYPES = TORCH_DTYPES[:12]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def torch_bytes(tensor: torch.Tensor) -> bytes:
    """The tensor's elements in C order as raw bytes."""
    flat = tensor.detach().reshape(-1)
    flat = torch.empty(flat.shape, dtype=flat.dtype).copy_(flat)  # stride 1 even for one element
    return bytes(flat.view(torch.uint8).numpy()) if flat.numel() else b""


def numpy_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).tobytes()


def random_tensor(data: bytes, dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    """A tensor of `shape` whose elements are the given bytes (every bit pattern, NaNs too)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    count = int(np.prod(shape, dtype=np.int64)) * itemsize
    raw = (data * (count // max(len(data), 1) + 1))[:count] if data else bytes(count)
    if dtype == torch.bool:
        raw = bytes(byte & 1 for byte in raw)
    buffer = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if count else torch.empty(
        0, dtype=torch.uint8)
    return buffer.view(dtype).reshape(shape).clone()


def assert_same_tensor(ours: np.ndarray, theirs: torch.Tensor) -> None:
    """Same dtype, shape, strides and bytes."""
    assert isinstance(ours, np.ndarray), type(ours)
    assert ours.dtype.name == dtype_name(theirs.dtype)
    assert ours.shape == tuple(theirs.shape)
    if ours.size > 1:
        assert ours.strides == tuple(s * theirs.element_size() for s in theirs.stride())
    assert numpy_bytes(ours) == torch_bytes(theirs)


def element_offset(view: np.ndarray, base: np.ndarray) -> int:
    """Offset of view's first element from base's, in elements."""
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // view.itemsize


class HandTensor:
    """Pickles as torch's `_rebuild_tensor_v2(storage, offset, size, stride, False, {})`."""

    def __init__(self, storage_id: tuple, offset: int, size: tuple, stride: tuple) -> None:
        self.storage_id, self.offset, self.size, self.stride = storage_id, offset, size, stride

    def __reduce__(self):
        import collections

        return (torch._utils._rebuild_tensor_v2,
                (HandStorage(self.storage_id), self.offset, self.size, self.stride, False,
                 collections.OrderedDict()))


class HandStorage:
    def __init__(self, storage_id: tuple) -> None:
        self.storage_id = storage_id


def write_legacy_by_hand(path, obj, storages, *, protocol=2, key_order=None) -> None:
    """A legacy checkpoint written with Python's own pickle module, independently of pickle_io
    and torch's writer, in the shape other writers (Pickle.jl) produce: any storage keys, the key
    list in any order, storage ids with view metadata. `storages`: key -> raw bytes, and each
    HandTensor's storage_id is the full id tuple (storage class global, key, ..., view)."""
    import io
    import pickle

    class LegacyPickler(pickle.Pickler):
        def persistent_id(self, value):
            return value.storage_id if isinstance(value, HandStorage) else None

    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=protocol)
    pickle.dump(1001, out, protocol=protocol)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=protocol)
    LegacyPickler(out, protocol=protocol).dump(obj)
    keys = list(storages) if key_order is None else key_order
    pickle.dump(keys, out, protocol=protocol)
    for key in keys:
        raw, itemsize = storages[key]
        out.write((len(raw) // itemsize).to_bytes(8, "little"))
        out.write(raw)
    with open(path, "wb") as file:
        file.write(out.getvalue())
