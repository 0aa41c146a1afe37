"""Turning the storages and tensor layouts a pickle names into numpy arrays (or into metadata).

Two `TensorSource`s for the unpickler: `ArraySource` builds numpy views over storage buffers
(mmap'd or owned), sharing one buffer per storage key so that tied weights and views share memory;
`InfoSource` records `TensorInfo` without touching tensor data (for `open` and `inspect`).
Every offset, size and stride is checked against the storage before numpy sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from pickle_io import dtypes
from pickle_io.errors import CheckpointError, UnsupportedTensorError
from pickle_io.objects import check_depth, convert
from pickle_io.unpickler import PendingArray, PendingDtype, StorageRef, Unsupported

# Strides beyond this many bytes cannot be real (and could overflow numpy's intp).
_MAX_BYTE_STRIDE = 2**62


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Where a tensor lives in a checkpoint, without its data."""

    dtype: np.dtype
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]  # in elements, as torch counts them
    offset: int  # in elements, into the storage
    storage: StorageRef
    conj: bool = False  # torch's lazy conjugate bit: the values are the conjugate of the bytes
    neg: bool = False  # torch's lazy negative bit: the values are the negated bytes

    __hash__ = None  # type: ignore[assignment]  (a tensor is no dict key: numpy arrays are not)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def storage_key(self) -> str:
        return self.storage.key


def storage_dtype(ref: StorageRef, filename: str) -> Optional[np.dtype]:
    """The numpy dtype of a typed storage (None for an untyped one)."""
    if ref.dtype_name is None:
        return None
    dtype = dtypes.numpy_dtype(ref.dtype_name)
    if dtype is None:
        raise CheckpointError(f"{filename}: storage {ref.key} has unsupported dtype {ref.dtype_name}")
    return dtype


def storage_nbytes(ref: StorageRef, filename: str) -> int:
    """Bytes of the storage a persistent id describes (for a legacy view: the view's bytes)."""
    dtype = storage_dtype(ref, filename)
    itemsize = 1 if dtype is None else dtype.itemsize
    numel = ref.numel if ref.view is None else ref.view[2]
    return numel * itemsize


def tensor_dtype(ref: StorageRef, dtype_name: Optional[str], filename: str) -> np.dtype:
    """The element type of a tensor: the one `_rebuild_tensor_v3` names, else its storage's."""
    if dtype_name is None:
        dtype = storage_dtype(ref, filename)
        if dtype is None:
            raise CheckpointError(f"{filename}: tensor over untyped storage {ref.key} names no dtype")
        return dtype
    dtype = dtypes.numpy_dtype(dtype_name)
    if dtype is None:
        raise CheckpointError(f"{filename}: unsupported tensor dtype torch.{dtype_name}")
    return dtype


def check_layout(dtype: np.dtype, offset: int, shape: tuple, stride: tuple, nbytes: int,
                 what: str) -> None:
    """Raise unless every element of the view lies inside a storage of `nbytes` bytes."""
    if len(shape) > 32:
        raise CheckpointError(f"{what}: {len(shape)} dimensions")
    if 0 in shape:
        return
    itemsize = dtype.itemsize
    last = offset  # the element furthest into the storage
    for size, step in zip(shape, stride):
        last += (size - 1) * step
    if (last + 1) * itemsize > nbytes:
        raise CheckpointError(
            f"{what}: tensor (offset {offset}, shape {shape}, stride {stride}) reaches element "
            f"{last} of a storage of {nbytes // itemsize} {dtype.name} elements")
    if stride and max(stride) * itemsize >= _MAX_BYTE_STRIDE:
        raise CheckpointError(f"{what}: stride {stride} is out of range")


def view_array(buffer: np.ndarray, dtype: np.dtype, offset: int, shape: tuple, stride: tuple,
               what: str) -> np.ndarray:
    """A numpy view of `buffer` (uint8) with a checked torch layout; shares buffer's memory."""
    check_layout(dtype, offset, shape, stride, len(buffer), what)
    itemsize = dtype.itemsize
    byte_offset = min(offset * itemsize, len(buffer))  # empty tensors may point past the end
    try:
        return np.ndarray(shape, dtype, buffer=buffer, offset=byte_offset,
                          strides=tuple([s * itemsize for s in stride]))
    except (ValueError, TypeError) as error:  # e.g. a shape whose product overflows
        raise CheckpointError(f"{what}: {error}") from None


def with_flags(array: np.ndarray, conj: bool, neg: bool) -> np.ndarray:
    """torch.load's values of a tensor saved with its conjugate/negative bit set: computed, so an
    owned array rather than a view of the file."""
    if conj:
        array = np.conjugate(array)
    if neg:
        array = np.negative(array)
    return array


def byteswapped(buffer: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """A little-endian copy of big-endian storage bytes holding `dtype` elements."""
    unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize  # complex: each part
    if unit == 1:
        return buffer
    if len(buffer) % unit:
        raise CheckpointError(f"{what}: {len(buffer)} bytes is not a whole number of {dtype.name}")
    return buffer.view(f"u{unit}").byteswap().view(np.uint8)


@dataclass(slots=True)
class _Storage:
    key: str
    dtype: Optional[np.dtype]  # None: untyped
    buffer: np.ndarray  # uint8, native byte order unless `big_endian`
    big_endian: bool = False
    swapped: Dict[np.dtype, np.ndarray] = field(default_factory=dict)  # dtype -> swapped copy


class ArraySource:
    """Builds numpy arrays; `read_record(key)` gives a storage's raw bytes as a uint8 array."""

    def __init__(self, read_record: Callable[[str], np.ndarray], *, filename: str,
                 big_endian: bool = False) -> None:
        self.read_record = read_record
        self.filename = filename
        self.big_endian = big_endian
        self._roots: Dict[str, _Storage] = {}
        self._views: Dict[str, _Storage] = {}

    def storage(self, ref: StorageRef) -> _Storage:
        root = self._root(ref)
        if ref.view is None:
            return root
        view_key, view_offset, view_numel = ref.view
        cached = self._views.get(view_key)
        if cached is not None:
            return cached
        itemsize = 1 if root.dtype is None else root.dtype.itemsize
        begin, end = view_offset * itemsize, (view_offset + view_numel) * itemsize
        if end > len(root.buffer):
            raise CheckpointError(
                f"{self.filename}: storage view {view_key} ends at byte {end} of storage "
                f"{ref.key} ({len(root.buffer)} bytes)")
        view = _Storage(view_key, root.dtype, root.buffer[begin:end], root.big_endian)
        self._views[view_key] = view
        return view

    def _root(self, ref: StorageRef) -> _Storage:
        dtype = storage_dtype(ref, self.filename)
        cached = self._roots.get(ref.key)
        if cached is not None:
            if dtype is not None and cached.dtype is not None and dtype != cached.dtype:
                raise CheckpointError(
                    f"{self.filename}: storage {ref.key} is used as both {cached.dtype.name} "
                    f"and {dtype.name}")
            return cached
        buffer = self.read_record(ref.key)
        itemsize = 1 if dtype is None else dtype.itemsize
        if len(buffer) != ref.numel * itemsize:
            raise CheckpointError(
                f"{self.filename}: storage {ref.key} holds {len(buffer)} bytes, but its id says "
                f"{ref.numel} x {itemsize}")
        storage = _Storage(ref.key, dtype, buffer, self.big_endian)
        if self.big_endian and dtype is not None:
            storage.buffer = byteswapped(buffer, dtype, f"{self.filename}: storage {ref.key}")
            storage.big_endian = False
        self._roots[ref.key] = storage
        return storage

    def tensor(self, storage: _Storage, dtype_name: Optional[str], offset: int, shape: tuple,
               stride: tuple, conj: bool = False, neg: bool = False) -> np.ndarray:
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"{self.filename}: tensor rebuilt from {type(storage).__name__}")
        dtype = storage.dtype if dtype_name is None else dtypes.numpy_dtype(dtype_name)
        if dtype is None:
            what = "names no dtype" if dtype_name is None else f"has dtype torch.{dtype_name}"
            raise CheckpointError(f"{self.filename}: tensor over storage {storage.key} {what}")
        view = self._view(storage, dtype, offset, shape, stride)
        return with_flags(view, conj, neg) if conj or neg else view

    def array(self, info: TensorInfo) -> np.ndarray:
        """The array a `TensorInfo` describes (from the metadata pass over the same file)."""
        view = self._view(self.storage(info.storage), info.dtype, info.offset, info.shape,
                          info.stride)
        return with_flags(view, info.conj, info.neg) if info.conj or info.neg else view

    def storage_array(self, ref: StorageRef) -> np.ndarray:
        """A bare storage named in the metadata pass, as `storage_as_array` gives it."""
        return storage_as_array(self.storage(ref), self.filename)

    def _view(self, storage: _Storage, dtype: np.dtype, offset: int, shape: tuple,
              stride: tuple) -> np.ndarray:
        buffer = storage.buffer
        if storage.big_endian:
            buffer = storage.swapped.get(dtype)
            if buffer is None:
                buffer = byteswapped(storage.buffer, dtype, f"{self.filename}: storage {storage.key}")
                storage.swapped[dtype] = buffer
        return view_array(buffer, dtype, offset, shape, stride,
                          f"{self.filename}: storage {storage.key}")


class InfoSource:
    """Records where each tensor lives (`TensorInfo`) and which storages exist, reading no data."""

    def __init__(self, *, filename: str) -> None:
        self.filename = filename
        self.storages: Dict[str, StorageRef] = {}  # root key -> first id naming it

    def storage(self, ref: StorageRef) -> StorageRef:
        known = self.storages.setdefault(ref.key, ref)
        if known.dtype_name != ref.dtype_name and None not in (known.dtype_name, ref.dtype_name):
            raise CheckpointError(
                f"{self.filename}: storage {ref.key} is used as both {known.dtype_name} and "
                f"{ref.dtype_name}")
        storage_nbytes(ref, self.filename)  # validates the dtype
        return ref

    def tensor(self, storage: StorageRef, dtype_name: Optional[str], offset: int, shape: tuple,
               stride: tuple, conj: bool = False, neg: bool = False) -> TensorInfo:
        if not isinstance(storage, StorageRef):
            raise CheckpointError(f"{self.filename}: tensor rebuilt from {type(storage).__name__}")
        dtype = tensor_dtype(storage, dtype_name, self.filename)
        check_layout(dtype, offset, shape, stride, storage_nbytes(storage, self.filename),
                     f"{self.filename}: storage {storage.key}")
        return TensorInfo(dtype, tuple(shape), tuple(stride), offset, storage, conj, neg)


def storage_as_array(storage: _Storage, filename: str) -> np.ndarray:
    """A bare storage (pickled on its own, not inside a tensor) as a 1-d array of its dtype
    (uint8 for an untyped storage), where torch.load gives a TypedStorage."""
    dtype = storage.dtype or np.dtype(np.uint8)
    if storage.big_endian and dtype.itemsize > 1:
        raise CheckpointError(f"{filename}: big-endian untyped storage {storage.key}")
    return view_array(storage.buffer, dtype, 0, (len(storage.buffer) // dtype.itemsize,), (1,),
                      f"{filename}: storage {storage.key}")


# What a finished pickle may still hold that is not yet a value of its own: bare storages,
# numpy objects before their BUILD, and tensors numpy cannot hold.
_PLACEHOLDERS = (_Storage, StorageRef, PendingArray, PendingDtype, Unsupported)


def _placeholder_value(item: Any, source: Optional["ArraySource"], filename: str) -> Any:
    kind = type(item)
    if kind is PendingDtype:
        return item.dtype
    if kind is PendingArray:
        if item.array is None:
            raise CheckpointError(f"{filename}: a numpy array without its state (no BUILD)")
        return item.array
    if kind is Unsupported:
        raise UnsupportedTensorError(f"{filename}: {item.what} is not supported")
    if kind is _Storage:
        return storage_as_array(item, filename)
    if source is None:  # a StorageRef of the metadata pass: kept until materialize
        return item
    return source.storage_array(item)


def finish(value: Any, filename: str) -> Any:
    """The loaded object as users get it: containers no deeper than `LIMITS.max_depth`, and
    bare storages and numpy objects turned into arrays and dtypes (a copy only when any occur).
    On a metadata-pass object, bare storages stay StorageRefs for `materialize`."""
    if not check_depth(value, filename, _PLACEHOLDERS):
        return value
    return convert(value, lambda item: _placeholder_value(item, None, filename), _PLACEHOLDERS,
                   filename)


def materialize(value: Any, source: ArraySource, filename: str) -> Any:
    """A copy of an object read with `InfoSource`, every `TensorInfo` replaced by its array.

    Structure is kept exactly as the unpickler built it: a part reached twice (the same tensor
    named twice, a shared list) is copied once and shared, and an OrderedDict's attributes
    (`_metadata`) are copied too. Cheaper than running the pickle a second time."""
    def replace(item: Any) -> Any:
        if type(item) is TensorInfo:
            return source.array(item)
        return _placeholder_value(item, source, filename)

    return convert(value, replace, (TensorInfo,) + _PLACEHOLDERS, filename)
