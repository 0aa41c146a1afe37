"""torch's zip checkpoint format (torch.save's default since 1.6): reading and writing.

An archive holds `<prefix>/data.pkl` (the pickle), `<prefix>/data/<key>` (each storage's raw
bytes), `<prefix>/byteorder` (absent: little) and `<prefix>/version`. The prefix is whatever
folder torch chose (`archive`, or the file's stem): it is read from the entries, never assumed.
"""

from __future__ import annotations

import mmap as mmap_module
import os
from typing import Any, Dict, Optional

import numpy as np

from pickle_io.errors import CheckpointError
from pickle_io.pickler import GlobalRef, Pickler, storage_class
from pickle_io.storage_plan import PlannedStorage, StoragePlan
from pickle_io.tensors import ArraySource, InfoSource
from pickle_io.unpickler import unpickle
from pickle_io.zipformat import ZipEntry, ZipReader, write_zip

_STORED = 0
WRITE_PREFIX = "archive"  # fixed, so the bytes do not depend on the file's name


class ZipCheckpoint:
    """A torch zip checkpoint opened for reading; `file` stays open while this is used."""

    def __init__(self, file: Any, filename: str) -> None:
        self.file = file
        self.filename = filename
        self.reader = ZipReader(file, filename)
        self.prefix = self._find_prefix()
        self.pickle = self.reader.read(self._entry("data.pkl"))
        byteorder = self.reader.entries.get(self.prefix + "byteorder")
        order = self.reader.read(byteorder).strip() if byteorder else b"little"
        if order not in (b"little", b"big"):
            raise CheckpointError(f"{filename}: unknown byteorder {order[:20]!r}")
        self.big_endian = order == b"big"
        self._mapped: Dict[bool, np.ndarray] = {}  # the whole mapped file as uint8, by writable

    def _find_prefix(self) -> str:
        names = list(self.reader.entries)
        if not names:
            raise CheckpointError(f"{self.filename}: empty zip archive")
        prefix = names[0].split("/", 1)[0] + "/"
        outside = [name for name in names if not name.startswith(prefix)]
        if outside:
            raise CheckpointError(f"{self.filename}: zip entry {outside[0]!r} is outside {prefix}")
        if prefix + "constants.pkl" in self.reader.entries or any(
                name.startswith(prefix + "code/") for name in names):
            raise CheckpointError(
                f"{self.filename}: a TorchScript archive (code/, constants.pkl), not a "
                "checkpoint; refusing to read it")
        if prefix + "data.pkl" not in self.reader.entries:
            raise CheckpointError(f"{self.filename}: zip archive without data.pkl, not a "
                                  "PyTorch checkpoint")
        return prefix

    def _entry(self, name: str) -> ZipEntry:
        entry = self.reader.entries.get(self.prefix + name)
        if entry is None:
            raise CheckpointError(f"{self.filename}: missing record {self.prefix + name}")
        return entry

    def info_object(self) -> Any:
        """The pickled object with `TensorInfo` in place of tensors; reads no tensor data."""
        return unpickle(self.pickle, filename=self.filename,
                        source=InfoSource(filename=self.filename))[0]

    def array_source(self, *, mmap: bool, writable: bool = False) -> ArraySource:
        if mmap:
            self._map(writable)  # now, while the file is surely open

        def read_record(key: str) -> np.ndarray:
            return self.read_record(key, mmap=mmap, writable=writable)

        return ArraySource(read_record, filename=self.filename, big_endian=self.big_endian)

    def load(self, *, mmap: bool, writable: bool = False) -> Any:
        return unpickle(self.pickle, filename=self.filename,
                        source=self.array_source(mmap=mmap, writable=writable))[0]

    def read_record(self, key: str, *, mmap: bool, writable: bool = False) -> np.ndarray:
        """A storage's bytes: a view of the mapped file (mmap; read-only unless writable, then
        copy-on-write) or an owned copy."""
        entry = self._entry(f"data/{key}")
        if entry.method != _STORED:
            data = self.reader.read(entry)  # inflated
            return np.frombuffer(data if mmap else bytearray(data), np.uint8)
        offset = self.reader.stored_offset(entry)
        if mmap:
            return self._map(writable)[offset:offset + entry.size]
        return read_owned(self.file, entry.size, offset, self.filename)

    def _map(self, writable: bool) -> np.ndarray:
        if writable not in self._mapped:  # slicing one array is cheaper than a frombuffer each
            self._mapped[writable] = np.frombuffer(map_file(self.file, writable=writable), np.uint8)
        return self._mapped[writable]


def map_file(file: Any, *, writable: bool) -> mmap_module.mmap:
    """The whole file mapped read-only, or copy-on-write (MAP_PRIVATE, as torch.load(mmap=True)
    maps): writes to a copy-on-write mapping stay in this process and never reach the file."""
    access = mmap_module.ACCESS_COPY if writable else mmap_module.ACCESS_READ
    return mmap_module.mmap(file.fileno(), 0, access=access)


def read_owned(file: Any, size: int, offset: int, filename: str) -> np.ndarray:
    """`size` bytes at `offset` into a new writable array (no zero-filling, one copy)."""
    array = np.empty(size, np.uint8)
    view = memoryview(array)
    done = 0
    while done < size:
        count = os.preadv(file.fileno(), [view[done:]], offset + done)
        if count <= 0:
            raise CheckpointError(f"{filename}: truncated at byte {offset + done}")
        done += count
    return array


def zip_persistent_id(storage: PlannedStorage) -> tuple:
    # Untyped storages count bytes; typed ones count elements.
    module, name = storage_class(storage)
    numel = storage.data.nbytes if module == "torch.storage" else storage.numel
    return ("storage", GlobalRef(module, name), storage.key, "cpu", numel)


def write_zip_checkpoint(obj: Any, plan: StoragePlan, fd: int) -> None:
    """Write `obj` (its arrays planned in `plan`) as a torch zip checkpoint to the empty file `fd`."""
    pickle = Pickler(plan.tensors, zip_persistent_id).dump(obj)
    prefix = WRITE_PREFIX + "/"
    records = [
        (prefix + "data.pkl", memoryview(pickle)),
        (prefix + ".format_version", memoryview(b"1")),
        (prefix + ".storage_alignment", memoryview(b"64")),
        (prefix + "byteorder", memoryview(b"little")),
    ]
    records += [(f"{prefix}data/{storage.key}", storage.data) for storage in plan.storages]
    records.append((prefix + "version", memoryview(b"3\n")))
    write_zip(fd, records)
