"""Deciding which storages a save writes, so that arrays sharing memory share a storage.

torch stores a tensor as (storage, offset, size, stride); numpy arrays only know their memory.
Arrays join one storage when they overlap in memory or are views of one owner array (the last
ndarray in their `.base` chain: for arrays from `pickle_io.load`, one storage). The storage spans
exactly the bytes its arrays use, and each array's offset and strides are expressed in its
elements. Arrays that cannot be expressed that way (negative or unaligned strides, another byte
order, different dtypes over the same memory) get a contiguous copy of their own.
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


def byte_span(array: np.ndarray) -> Tuple[int, int]:
    """[lowest byte address, end) of a non-empty array with non-negative strides."""
    low = array.__array_interface__["data"][0]
    extent = sum((n - 1) * s for n, s in zip(array.shape, array.strides))
    return low, low + extent + array.itemsize


def _bytes_from(array: np.ndarray, length: int) -> np.ndarray:
    """`length` bytes of memory starting at the array's first element, as a uint8 view.

    Only called for spans inside one allocation: the union of arrays that overlap or share an
    owner, so every byte lies within memory those arrays already view."""
    if array.flags.c_contiguous and array.nbytes == length:
        return array.reshape(-1).view(np.uint8)  # the usual case: one array, its own bytes
    first = array[(slice(0, 1),) * array.ndim].reshape(1).view(np.uint8)
    return np.lib.stride_tricks.as_strided(first, shape=(length,), strides=(1,), writeable=False)


class _Groups:
    """Union-find over array indices."""

    def __init__(self, count: int) -> None:
        self.parent = list(range(count))

    def find(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def union(self, first: int, second: int) -> None:
        self.parent[self.find(second)] = self.find(first)


class StoragePlan:
    """Storages for the arrays of one object, keyed "0", "1", ... in first-seen order."""

    def __init__(self) -> None:
        self.storages: List[PlannedStorage] = []
        self.tensors: Dict[int, PlannedTensor] = {}  # id(array) -> layout
        self._keep_alive: List[np.ndarray] = []

    def add_arrays(self, arrays: List[Tuple[str, Any]]) -> None:
        """Plan storages for (path, array or numpy scalar) pairs, in the order the pickle names
        them. A numpy scalar becomes a 0-d tensor of its own."""
        unique: List[Any] = []
        seen = set()
        for path, array in arrays:
            if id(array) in seen:
                continue
            seen.add(id(array))
            if dtypes.torch_name(array.dtype.newbyteorder("=")) is None:
                raise PickleIOError(f"cannot save {path}: dtype {array.dtype} has no torch dtype")
            unique.append(array)
        shared = [array for array in unique if self._shareable(array)]
        spans = [byte_span(array) for array in shared]
        groups = _Groups(len(shared))
        by_owner: Dict[int, int] = {}
        for index, array in enumerate(shared):
            groups.union(by_owner.setdefault(id(_owner(array)), index), index)
        by_start = sorted(range(len(shared)), key=lambda index: spans[index])
        reaching, reach = None, -1  # the span reaching furthest so far
        for index in by_start:
            if spans[index][0] < reach:
                groups.union(reaching, index)
            if spans[index][1] > reach:
                reaching, reach = index, spans[index][1]
        members: Dict[int, List[int]] = {}
        for index in range(len(shared)):
            members.setdefault(groups.find(index), []).append(index)
        group_of = {id(shared[index]): root for root, group in members.items() for index in group}
        for array in unique:  # storages numbered in the order the pickle first names them
            root = group_of.get(id(array))
            if root is None:
                self._add_copy(array)
            elif root in members:
                group = members.pop(root)
                self._add_group([shared[i] for i in group], [spans[i] for i in group])

    @staticmethod
    def _shareable(array: Any) -> bool:
        if not isinstance(array, np.ndarray):
            return False  # a numpy scalar
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
        self._keep_alive.append(native)
        storage = self._new_storage(native.dtype, native.reshape(-1).view(np.uint8))
        itemsize = native.itemsize
        self.tensors[id(array)] = PlannedTensor(
            storage, 0, array.shape, tuple(s // itemsize for s in native.strides))

    def _add_group(self, members: List[np.ndarray], spans: List[Tuple[int, int]]) -> None:
        dtype = members[0].dtype
        itemsize = dtype.itemsize
        low = min(span[0] for span in spans)
        high = max(span[1] for span in spans)
        if any(array.dtype != dtype for array in members) or any(
                (span[0] - low) % itemsize for span in spans):
            for array in members:  # torch cannot share one storage between dtypes
                self._add_copy(array)
            return
        first = members[[span[0] for span in spans].index(low)]
        storage = self._new_storage(dtype, _bytes_from(first, high - low))
        for array, span in zip(members, spans):
            self.tensors[id(array)] = PlannedTensor(
                storage, (span[0] - low) // itemsize, array.shape,
                tuple(s // itemsize for s in array.strides))
