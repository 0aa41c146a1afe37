"""Plain pickle files (protocols 0-5) of builtins and numpy arrays, dtypes and scalars.

People keep model data in `.pkl` files too; Pickle.jl reads them. They go through the same
machine and allowlist as checkpoints, with no persistent ids: nothing outside the allowlist runs.
"""

from __future__ import annotations

import os
from typing import Any

from pickle_io.errors import CheckpointError
from pickle_io.tensors import ArraySource
from pickle_io.unpickler import HIGHEST_PROTOCOL, unpickle

# Opcodes a protocol 0 or 1 pickle can start with (MARK, containers, GLOBAL, scalars, strings).
_FIRST_OPCODES = frozenset(b"(]})cILFSVNKJMGXUT")
_PROTO = 0x80


def looks_like_pickle(head: bytes, tail: bytes) -> bool:
    """Whether a file starts like a pickle and ends with STOP."""
    if not head or tail[-1:] != b".":
        return False
    if head[0] == _PROTO:
        return len(head) > 1 and head[1] <= HIGHEST_PROTOCOL
    return head[0] in _FIRST_OPCODES


class PlainPickle:
    """A plain pickle file, read whole (its size is the file's)."""

    def __init__(self, file: Any, filename: str) -> None:
        self.filename = filename
        data = os.pread(file.fileno(), os.fstat(file.fileno()).st_size, 0)
        self._object, end = unpickle(data, filename=filename)
        if end != len(data):
            raise CheckpointError(
                f"{filename}: {len(data) - end} bytes after the pickle's STOP (at byte {end})")

    def info_object(self) -> Any:
        return self._object

    def array_source(self, *, mmap: bool, writable: bool = False) -> ArraySource:
        def no_records(key: str) -> Any:
            raise CheckpointError(f"{self.filename}: a plain pickle has no storages")
        return ArraySource(no_records, filename=self.filename)

    def load(self, *, mmap: bool, writable: bool = False) -> Any:
        return self._object
