"""Deciding which storages a save writes, so that arrays sharing memory share a storage.

torch stores a tensor as (storage, offset, size, stride); numpy arrays only know their memory.
Arrays join one storage when they overlap in memory or are views of one owner array (the last
ndarray in their `.base` chain: for arrays from `pickle_io.load`, one storage). The storage spans
exactly the bytes its arrays use, and each array's offset and strides are expressed in its
elements. Arrays that cannot be expressed that way (negative or unaligned strides, another byte
order, different dtypes over the same memory) get a contiguous copy of their own.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from pickle_io import dtypes
from pickle_io.errors import PickleIOError


class PlannedStorage(NamedTuple):
    key: str
    dtype_name: str  # torch dtype name
    numel: int  # elements of dtype
    data: memoryview  # the bytes to write (1-D, unsigned bytes)


class PlannedTensor(NamedTuple):
    storage: PlannedStorage
    offset: int
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]


def _owner(array: np.ndarray) -> np.ndarray:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


@functools.lru_cache(maxsize=None)
def _savable_torch_name(dtype: np.dtype) -> Optional[str]:
    """The torch dtype of an array of this dtype once in native byte order, or None."""
    return dtypes.torch_name(dtype.newbyteorder("="))


@functools.lru_cache(maxsize=4096)  # a model has few distinct layouts
def _element_strides(strides: Tuple[int, ...], itemsize: int) -> Optional[Tuple[int, ...]]:
    if all(stride >= 0 and stride % itemsize == 0 for stride in strides):
        return tuple(stride // itemsize for stride in strides)
    return None


def element_strides(array: np.ndarray) -> Optional[Tuple[int, ...]]:
    """The array's strides counted in elements, or None when torch cannot express them
    (negative, or not a multiple of the element size)."""
    return _element_strides(array.strides, array.itemsize)


def _c_strides(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """Row-major strides in elements, as torch gives a contiguous tensor of this shape."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _groups(arrays: List[np.ndarray]) -> Dict[int, List[np.ndarray]]:
    """id(array) -> the arrays that must share its storage (one list object per group): those
    with the same owner, and, where memory numpy did not allocate is involved, any that overlap."""
    by_owner: Dict[int, List[np.ndarray]] = {}
    foreign = False  # an owner over memory from elsewhere (a mapped file, bytes, a torch tensor)
    for array in arrays:
        owner = _owner(array)
        foreign = foreign or owner.base is not None or not owner.flags.owndata
        by_owner.setdefault(id(owner), []).append(array)
    if foreign:
        return _overlap_groups(arrays, by_owner)
    # Memory numpy allocated belongs to its owner alone: groups of different owners are disjoint.
    return {id(array): members for members in by_owner.values() for array in members}


def _overlap_groups(arrays: List[np.ndarray],
                    by_owner: Dict[int, List[np.ndarray]]) -> Dict[int, List[np.ndarray]]:
    """Owner groups merged wherever the memory of their arrays overlaps (a sweep by start)."""
    index_of = {id(array): index for index, array in enumerate(arrays)}
    groups = _Groups(len(arrays))
    for members in by_owner.values():
        for member in members[1:]:
            groups.union(index_of[id(members[0])], index_of[id(member)])
    spans = [byte_span(array) for array in arrays]
    reaching, reach = None, -1  # the span reaching furthest so far
    for index in sorted(range(len(arrays)), key=lambda index: spans[index]):
        if spans[index][0] < reach:
            groups.union(reaching, index)
        if spans[index][1] > reach:
            reaching, reach = index, spans[index][1]
    merged: Dict[int, List[np.ndarray]] = {}
    for index, array in enumerate(arrays):
        merged.setdefault(groups.find(index), []).append(array)
    return {id(array): members for members in merged.values() for array in members}


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
            if _savable_torch_name(array.dtype) is None:
                raise PickleIOError(f"cannot save {path}: dtype {array.dtype} has no torch dtype")
            unique.append(array)
        shared = [array for array in unique if self._shareable(array)]
        group_of = _groups(shared)
        done = set()
        for array in unique:  # storages numbered in the order the pickle first names them
            members = group_of.get(id(array))
            if members is None:
                self._add_copy(array)
            elif id(members) not in done:
                done.add(id(members))
                if len(members) == 1 and array.flags.c_contiguous:
                    self._add_whole(array)
                else:
                    self._add_group(members, [byte_span(member) for member in members])

    @staticmethod
    def _shareable(array: Any) -> bool:
        if not isinstance(array, np.ndarray):
            return False  # a numpy scalar
        native = array.dtype.isnative or array.itemsize == 1
        return native and array.size > 0 and element_strides(array) is not None

    def _new_storage(self, dtype: np.dtype, data: np.ndarray) -> PlannedStorage:
        storage = PlannedStorage(str(len(self.storages)), dtypes.torch_name(dtype),
                                 data.nbytes // dtype.itemsize, memoryview(data).cast("B"))
        self.storages.append(storage)
        return storage

    def _add_whole(self, array: np.ndarray) -> None:
        """A C-contiguous array stored alone: its own bytes, in place."""
        try:
            data = memoryview(array).cast("B")
        except (TypeError, ValueError):  # dtypes the buffer protocol cannot name (bfloat16, ...)
            data = memoryview(array.reshape(-1).view(np.uint8))
        storage = PlannedStorage(str(len(self.storages)), _savable_torch_name(array.dtype),
                                 array.size, data)
        self.storages.append(storage)
        self.tensors[id(array)] = PlannedTensor(storage, 0, array.shape, element_strides(array))

    def _add_copy(self, array: Any) -> None:
        native = np.asarray(array, dtype=array.dtype.newbyteorder("="))
        if not native.flags.c_contiguous:
            native = native.copy(order="C")
        self._keep_alive.append(native)
        storage = self._new_storage(native.dtype, native.reshape(-1).view(np.uint8))
        # An empty array's strides may be anything (even negative): give it row-major ones.
        strides = element_strides(native) or _c_strides(native.shape)
        self.tensors[id(array)] = PlannedTensor(storage, 0, array.shape, strides)

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
                storage, (span[0] - low) // itemsize, array.shape, element_strides(array))
