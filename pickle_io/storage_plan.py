"""Deciding which storages a save writes, so that arrays sharing memory share a storage.

torch stores a tensor as (storage, offset, size, stride); numpy arrays only know their memory.
Arrays that are views of one owner array (the last ndarray in their `.base` chain: for arrays
from `pickle_io.load`, one storage) and have the same dtype become one storage spanning exactly the
bytes they use; every array's offset and strides are then expressed in elements of it. Arrays that
cannot be expressed that way (negative or unaligned strides, another byte order, a different dtype
over the same memory) get a contiguous copy of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from pickle_io import dtypes
from pickle_io.errors import PickleIOError


@dataclass(frozen=True)
class PlannedStorage:
    key: str
    dtype_name: str  # torch dtype name
    numel: int  # elements of dtype
    data: memoryview  # the bytes to write (1-D, unsigned bytes)


@dataclass(frozen=True)
class PlannedTensor:
    storage: PlannedStorage
    offset: int
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]


def _owner(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _byte_span(array: np.ndarray) -> Tuple[int, int]:
    """[first byte, end) of a non-empty array with non-negative strides."""
    low = array.__array_interface__["data"][0]
    extent = sum((n - 1) * s for n, s in zip(array.shape, array.strides))
    return low, low + extent + array.itemsize


def _owner_bytes(owner: np.ndarray) -> Tuple[np.ndarray, int]:
    """The owner's memory as a 1-D uint8 view, and its start address; raises when not contiguous."""
    if owner.flags.c_contiguous:
        flat = owner.reshape(-1)
    elif owner.flags.f_contiguous:
        flat = owner.reshape(-1, order="F")
    else:
        raise ValueError("owner is not contiguous")
    as_bytes = flat.view(np.uint8)
    return as_bytes, as_bytes.__array_interface__["data"][0]


class StoragePlan:
    """Storages for the arrays of one object, keyed "0", "1", ... in first-seen order."""

    def __init__(self) -> None:
        self.storages: List[PlannedStorage] = []
        self.tensors: Dict[int, PlannedTensor] = {}  # id(array) -> layout
        self._keep_alive: List[np.ndarray] = []

    def add_arrays(self, arrays: List[Tuple[str, Any]]) -> None:
        """Plan storages for (path, array or numpy scalar) pairs, in the order the pickle names
        them. A numpy scalar becomes a 0-d tensor of its own."""
        groups: Dict[Tuple[int, str], List[np.ndarray]] = {}
        order: List[Tuple[str, object]] = []  # ("group", key) or ("alone", array), first-seen
        seen = set()
        for path, array in arrays:
            if id(array) in seen:
                continue
            seen.add(id(array))
            if isinstance(array, np.generic):
                order.append(("alone", array))
                continue
            name = dtypes.torch_name(array.dtype.newbyteorder("="))
            if name is None:
                raise PickleIOError(f"cannot save {path}: dtype {array.dtype} has no torch dtype")
            if not self._shareable(array):
                order.append(("alone", array))
                continue
            group_key = (id(_owner(array)), name)
            if group_key not in groups:
                groups[group_key] = []
                order.append(("group", group_key))
            groups[group_key].append(array)
        for kind, item in order:
            if kind == "alone":
                self._add_copy(item)
            else:
                self._add_group(groups[item])

    @staticmethod
    def _shareable(array: np.ndarray) -> bool:
        itemsize = array.itemsize
        native = array.dtype.isnative or itemsize == 1
        return native and array.size > 0 and all(s >= 0 and s % itemsize == 0 for s in array.strides)

    def _new_storage(self, dtype: np.dtype, data: np.ndarray) -> PlannedStorage:
        storage = PlannedStorage(str(len(self.storages)), dtypes.torch_name(dtype),
                                 data.nbytes // dtype.itemsize, memoryview(data).cast("B"))
        self.storages.append(storage)
        return storage

    def _add_copy(self, array: Any) -> None:
        native = np.asarray(array, dtype=array.dtype.newbyteorder("="))
        if not native.flags.c_contiguous:
            native = native.copy(order="C")
        if native.dtype.kind == "V" or native.dtype.hasobject:
            raise PickleIOError(f"cannot save dtype {native.dtype}")
        self._keep_alive.append(native)
        storage = self._new_storage(native.dtype, native.reshape(-1).view(np.uint8))
        itemsize = native.itemsize
        self.tensors[id(array)] = PlannedTensor(
            storage, 0, array.shape, tuple(s // itemsize for s in native.strides))

    def _add_group(self, members: List[np.ndarray]) -> None:
        dtype = members[0].dtype
        itemsize = dtype.itemsize
        spans = [_byte_span(array) for array in members]
        low = min(span[0] for span in spans)
        high = max(span[1] for span in spans)
        try:
            owner_bytes, owner_start = _owner_bytes(_owner(members[0]))
        except ValueError:
            owner_bytes = None
        inside = owner_bytes is not None and low >= owner_start and high <= owner_start + len(
            owner_bytes)
        if not inside or any((span[0] - low) % itemsize for span in spans):
            for array in members:
                self._add_copy(array)
            return
        data = owner_bytes[low - owner_start:high - owner_start]
        storage = self._new_storage(dtype, data)
        for array, span in zip(members, spans):
            self.tensors[id(array)] = PlannedTensor(
                storage, (span[0] - low) // itemsize, array.shape,
                tuple(s // itemsize for s in array.strides))
