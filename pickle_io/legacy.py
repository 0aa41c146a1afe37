"""torch's legacy checkpoint format (`_use_new_zipfile_serialization=False`): reading and writing.

Five pickles, then raw storages: the magic number 0x1950a86a20f9469cfc6c, the protocol version
1001, a sys_info dict, the object (storage ids carry a sixth field, a legacy view or None), and the
list of storage keys. Then, for each key in that list's order, an int64 element count and the
storage's bytes. The storages are contiguous in the file, so unlike torch we can map them.

Where each storage starts depends on the element size of every storage before it, which only the
object pickle tells; so the object is read once with tensor metadata in place of tensors, the
storages are located, and then the metadata is turned into arrays.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from pickle_io.atomic_file import preallocate, writev_all
from pickle_io.errors import CheckpointError, PickleIOError
from pickle_io.pickler import V3_DTYPES, GlobalRef, Pickler, storage_class
from pickle_io.storage_plan import PlannedStorage, StoragePlan
from pickle_io.tensors import ArraySource, InfoSource, materialize, storage_dtype
from pickle_io.torch_zip import map_file, read_owned
from pickle_io.unpickler import TruncatedPickle, unpickle

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
HEAD_BYTES = 2**20
MAGIC_PICKLE = b"\x80\x02\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little") + b"."
SYS_INFO = {
    "protocol_version": PROTOCOL_VERSION,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}


def starts_like_legacy(head: bytes) -> bool:
    """Whether a file's first bytes are a pickle of the legacy magic number (any protocol)."""
    try:
        magic = unpickle(head, filename="header")[0]
    except PickleIOError:
        return False
    return type(magic) is int and magic == MAGIC_NUMBER


class LegacyCheckpoint:
    """A legacy checkpoint opened for reading; `file` stays open while this is used."""

    def __init__(self, file: Any, filename: str) -> None:
        self.file = file
        self.filename = filename
        self.data = map_file(file, writable=False)
        # The pickles come first; they are parsed from a bytes copy of the file's head, which
        # indexes faster than the mapping (a pickle running past it is re-read from the map).
        self.head = self.data[:HEAD_BYTES]
        magic, position = self._unpickle(0)
        if type(magic) is not int or magic != MAGIC_NUMBER:
            raise CheckpointError(f"{filename}: not a PyTorch checkpoint (bad magic number)")
        version, position = self._unpickle(position)
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise CheckpointError(f"{filename}: unsupported legacy protocol version {version!r:.20}")
        sys_info, position = self._unpickle(position)
        if not isinstance(sys_info, dict):
            raise CheckpointError(f"{filename}: legacy sys_info is not a dict")
        self.big_endian = sys_info.get("little_endian", True) is False
        info = InfoSource(filename=filename)
        self._info_object, position = self._unpickle(position, info)
        keys, position = self._unpickle(position)
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise CheckpointError(f"{filename}: legacy storage key list is malformed")
        self.records = self._locate_records(keys, info, position)

    def _unpickle(self, start: int, source: Optional[InfoSource] = None) -> Tuple[Any, int]:
        try:
            return unpickle(self.head, filename=self.filename, source=source, start=start)
        except TruncatedPickle:
            if len(self.head) == len(self.data):
                raise
            return unpickle(self.data, filename=self.filename, source=source, start=start)

    def _locate_records(self, keys: list, info: InfoSource, position: int) -> Dict[str, Tuple[int, int]]:
        """key -> (offset, nbytes) of each storage's bytes, checking each element count."""
        records: Dict[str, Tuple[int, int]] = {}
        size = len(self.data)
        byteorder = "big" if self.big_endian else "little"
        for key in keys:
            ref = info.storages.get(key)
            if ref is None or key in records:
                raise CheckpointError(f"{self.filename}: storage key {key!r:.40} is unknown or repeated")
            dtype = storage_dtype(ref, self.filename)
            itemsize = 1 if dtype is None else dtype.itemsize
            if position + 8 > size:
                raise CheckpointError(f"{self.filename}: truncated before storage {key}")
            numel = int.from_bytes(self.data[position:position + 8], byteorder, signed=True)
            if numel != ref.numel:
                raise CheckpointError(
                    f"{self.filename}: storage {key} has {numel} elements in the data, {ref.numel} "
                    "in its id")
            nbytes = numel * itemsize
            if position + 8 + nbytes > size:
                raise CheckpointError(f"{self.filename}: storage {key} is truncated")
            records[key] = (position + 8, nbytes)
            position += 8 + nbytes
        missing = set(info.storages) - set(records)
        if missing:
            raise CheckpointError(f"{self.filename}: no data for storage {sorted(missing)[0]!r}")
        return records

    def info_object(self) -> Any:
        return self._info_object

    def array_source(self, *, mmap: bool, writable: bool = False) -> ArraySource:
        mapped = map_file(self.file, writable=True) if mmap and writable else self.data

        def read_record(key: str) -> np.ndarray:
            offset, nbytes = self.records[key]
            if mmap:
                return np.frombuffer(mapped, np.uint8, count=nbytes, offset=offset)
            return read_owned(self.file, nbytes, offset, self.filename)

        return ArraySource(read_record, filename=self.filename, big_endian=self.big_endian)

    def load(self, *, mmap: bool, writable: bool = False) -> Any:
        return materialize(self._info_object, self.array_source(mmap=mmap, writable=writable),
                           self.filename)


def _legacy_persistent_id(storage: PlannedStorage) -> tuple:
    module, name = storage_class(storage)
    return ("storage", GlobalRef(module, name), storage.key, "cpu", storage.numel, None)


def write_legacy_checkpoint(obj: Any, plan: StoragePlan, fd: int) -> None:
    """Write `obj` (its arrays planned in `plan`) in the legacy format to the empty file `fd`."""
    for storage in plan.storages:
        if storage.dtype_name in V3_DTYPES:
            raise PickleIOError(
                f"the legacy format cannot hold {storage.dtype_name} tensors; use format='zip'")
    keys = sorted(storage.key for storage in plan.storages)  # torch sorts the keys as strings
    by_key = {storage.key: storage for storage in plan.storages}
    head = b"".join([
        MAGIC_PICKLE,
        Pickler({}, _legacy_persistent_id).dump(PROTOCOL_VERSION),
        Pickler({}, _legacy_persistent_id).dump(SYS_INFO),
        Pickler(plan.tensors, _legacy_persistent_id).dump(obj),
        Pickler({}, _legacy_persistent_id).dump(keys),
    ])
    buffers = [head]
    for key in keys:
        buffers += [by_key[key].numel.to_bytes(8, "little", signed=True), by_key[key].data]
    preallocate(fd, sum(len(buffer) for buffer in buffers))
    writev_all(fd, buffers)
