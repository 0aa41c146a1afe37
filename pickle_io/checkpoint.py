"""The public checkpoint functions: load, open, save and inspect, over every format we read.

Formats are recognised by content, never by file name: torch zip (with any bytes before it),
torch legacy, and safetensors (read through the `safetensors` package). 7z archives, TorchScript
archives and anything else are refused with a CheckpointError.
"""

from __future__ import annotations

import builtins
import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple, Union

from pickle_io import safetensors_io
from pickle_io.atomic_file import replacing
from pickle_io.errors import CheckpointError, PickleIOError
from pickle_io.legacy import LegacyCheckpoint, starts_like_legacy, write_legacy_checkpoint
from pickle_io.pickler import iter_arrays, paused_gc
from pickle_io.storage_plan import StoragePlan
from pickle_io.tensors import ArraySource, TensorInfo, materialize
from pickle_io.torch_zip import ZipCheckpoint, write_zip_checkpoint
from pickle_io.zipformat import ZipReader

PathLike = Union[str, os.PathLike]
SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
TAR_MAGIC_OFFSET = 257


def detect_format(path: PathLike) -> str:
    """"zip", "legacy" or "safetensors", from the file's bytes; CheckpointError otherwise."""
    with builtins.open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        head = file.read(512)
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            return "zip"
        if starts_like_legacy(head):
            return "legacy"
        if head.startswith(SEVEN_ZIP_MAGIC):
            raise CheckpointError(f"{path}: a 7z archive, not a PyTorch checkpoint")
        if safetensors_io.looks_like_safetensors(head, size):
            return "safetensors"
        if head[TAR_MAGIC_OFFSET:TAR_MAGIC_OFFSET + 5] == b"ustar":
            raise CheckpointError(f"{path}: a tar archive (torch < 0.4 format), not supported")
        if size == 0:
            raise CheckpointError(f"{path}: empty file")
        try:
            ZipReader(file, str(path))  # a zip with other bytes before it
            return "zip"
        except CheckpointError:
            pass
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither zip, legacy nor safetensors)")


TorchCheckpoint = Union[ZipCheckpoint, LegacyCheckpoint]


def _read_torch_file(file: Any, path: PathLike, kind: str) -> TorchCheckpoint:
    if kind == "safetensors":
        raise CheckpointError(f"{path}: a safetensors file, not a torch checkpoint")
    return ZipCheckpoint(file, str(path)) if kind == "zip" else LegacyCheckpoint(file, str(path))


@contextlib.contextmanager
def _torch_file(path: PathLike, kind: str) -> Iterator[TorchCheckpoint]:
    with builtins.open(path, "rb") as file:
        yield _read_torch_file(file, path, kind)


def load(path: PathLike, *, mmap: bool = True, writable: bool = False) -> Any:
    """The object saved in a checkpoint, with every tensor as a numpy array.

    mmap=True gives read-only views of the memory-mapped file (no copy); with writable=True the
    file is mapped copy-on-write instead, as torch.load(mmap=True) does: the arrays are writable
    and what is written stays in this process, never reaching the file. mmap=False gives owned,
    writable arrays. Tensors that share a storage in the file share memory here, with
    their offsets and strides. A safetensors file gives its {name: array} dict.
    """
    kind = detect_format(path)
    if kind == "safetensors":
        return safetensors_io.read_safetensors(path, mmap=mmap, writable=writable)
    with _torch_file(path, kind) as checkpoint:
        return checkpoint.load(mmap=mmap, writable=writable)


class Checkpoint(Mapping):
    """A lazy, read-only mapping over a checkpoint's state dict: `keys()`, `info(name)`, and
    `ckpt[name]`, which reads that one tensor (a view of the mapped file) and nothing more."""

    def __init__(self, path: PathLike) -> None:
        self.path = str(path)
        self._file = builtins.open(path, "rb")
        try:
            self._checkpoint = _read_torch_file(self._file, path, detect_format(path))
            entries = self._checkpoint.info_object()
            if not isinstance(entries, dict):
                raise CheckpointError(f"{path}: holds a {type(entries).__name__}, not a state dict")
            self._entries = entries
            self._source: ArraySource = self._checkpoint.array_source(mmap=True)
        except BaseException:
            self._file.close()
            raise

    def info(self, name: str) -> TensorInfo:
        """dtype, shape, stride, offset, storage key and nbytes of one tensor, reading no data."""
        entry = self._entries[name]
        if not isinstance(entry, TensorInfo):
            raise PickleIOError(f"{self.path}: {name!r} is a {type(entry).__name__}, not a tensor")
        return entry

    def __getitem__(self, name: str) -> Any:
        """The value under `name`; its tensors (also inside nested containers) are read now."""
        entry = self._entries[name]
        if self._file.closed:
            raise PickleIOError(f"{self.path}: the checkpoint is closed; read tensors inside `with`")
        return materialize(entry, self._source, self.path)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def open(path: PathLike) -> Checkpoint:  # noqa: A001  (the public name the API promises)
    """A lazy mapping over the state dict in `path`; use it as a context manager."""
    return Checkpoint(path)


FORMATS = ("zip", "legacy")


@paused_gc()
def save(obj: Any, path: PathLike, *, format: str = "zip") -> None:  # noqa: A002
    """Save a nested dict/list/tuple of numpy arrays, str, int, float, bool, None as a torch
    checkpoint that `torch.load(weights_only=True)` reads back bit-exact ("zip" or "legacy").

    Arrays that are views of one array keep sharing one storage (tied weights are stored once).
    The same input gives the same bytes. The file is written atomically.
    """
    if format not in FORMATS:
        raise PickleIOError(f"unknown checkpoint format {format!r}; use one of {FORMATS}")
    plan = StoragePlan()
    plan.add_arrays(iter_arrays(obj))
    writer = write_zip_checkpoint if format == "zip" else write_legacy_checkpoint
    with replacing(path) as temporary:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            writer(obj, plan, fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class TensorSummary:
    name: str
    dtype: str
    shape: Tuple[int, ...]
    nbytes: int
    storage_key: Optional[str]  # None for safetensors (no shared storages)


@dataclass(frozen=True)
class CheckpointSummary:
    path: str
    format: str  # "zip", "legacy" or "safetensors"
    tensors: List[TensorSummary]

    @property
    def total_bytes(self) -> int:
        """Bytes of all tensors (a tensor stored twice under two names counts twice)."""
        return sum(tensor.nbytes for tensor in self.tensors)


def _flatten(value: Any, name: str, found: List[TensorSummary]) -> None:
    if isinstance(value, TensorInfo):
        found.append(TensorSummary(name, value.dtype.name, value.shape, value.nbytes,
                                   value.storage_key))
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{name}.{key}" if name else str(key), found)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(item, f"{name}.{index}" if name else str(index), found)


def inspect(path: PathLike) -> CheckpointSummary:
    """The tensors of a checkpoint (name, dtype, shape, bytes) without reading their data.
    Nested containers give dotted names (`optimizer.state.0.exp_avg`)."""
    kind = detect_format(path)
    if kind == "safetensors":
        tensors = [TensorSummary(name, dtype.name, shape, dtype.itemsize * math.prod(shape), None)
                   for name, dtype, shape in safetensors_io.tensor_table(path)]
        return CheckpointSummary(str(path), kind, tensors)
    found: List[TensorSummary] = []
    with _torch_file(path, kind) as checkpoint:
        _flatten(checkpoint.info_object(), "", found)
    return CheckpointSummary(str(path), kind, found)
