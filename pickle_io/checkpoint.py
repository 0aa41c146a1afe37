"""The public checkpoint functions: load, open, save and inspect, over every format we read.

Formats are recognised by content, never by file name: torch zip (with any bytes before it),
torch legacy, safetensors (read through the `safetensors` package) and plain pickles of builtins
and numpy objects. 7z archives, TorchScript archives and anything else are refused with a
CheckpointError. Whatever a hostile file holds, these functions raise only PickleIOError (or
OSError for a file that cannot be opened).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar, Union

import numpy as np

from pickle_io import safetensors_io
from pickle_io.atomic_file import replacing
from pickle_io.errors import CheckpointError, PickleIOError, describe
from pickle_io.legacy import LegacyCheckpoint, starts_like_legacy, write_legacy_checkpoint
from pickle_io.limits import LIMITS
from pickle_io.objects import CONTAINER_TYPES, children
from pickle_io.pickler import iter_arrays, paused_gc
from pickle_io.plain_pickle import PlainPickle, looks_like_pickle
from pickle_io.storage_plan import StoragePlan
from pickle_io.tensors import ArraySource, TensorInfo, finish, materialize, storage_dtype
from pickle_io.torch_zip import ZipCheckpoint, write_zip_checkpoint
from pickle_io.unpickler import MetaTensor, StorageRef
from pickle_io.zipformat import ZipReader

PathLike = Union[str, os.PathLike]
SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
TAR_MAGIC_OFFSET = 257
_Result = TypeVar("_Result")


def _no_foreign_exceptions(function: Callable[..., _Result]) -> Callable[..., _Result]:
    """Last line of defence: an exception from outside pickle_io (numpy, the safetensors
    package, a check we missed) becomes a CheckpointError naming the file; OSError (a file that
    cannot be opened) passes through."""
    @functools.wraps(function)
    def guarded(path: PathLike, *args: Any, **kwargs: Any) -> _Result:
        try:
            return function(path, *args, **kwargs)
        except (PickleIOError, OSError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(
                f"{path}: cannot read it: {type(error).__name__}: {describe(str(error), 200)}"
            ) from None
    return guarded


def detect_format(path: PathLike) -> str:
    """"zip", "legacy", "safetensors" or "pickle" (a plain pickle), from the file's bytes;
    CheckpointError otherwise."""
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
        if looks_like_pickle(head, os.pread(file.fileno(), 1, size - 1)):
            return "pickle"
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither zip, legacy nor safetensors)")


TorchCheckpoint = Union[ZipCheckpoint, LegacyCheckpoint, PlainPickle]
_READERS = {"zip": ZipCheckpoint, "legacy": LegacyCheckpoint, "pickle": PlainPickle}


def _read_torch_file(file: Any, path: PathLike, kind: str) -> TorchCheckpoint:
    if kind == "safetensors":
        raise CheckpointError(f"{path}: a safetensors file, not a torch checkpoint")
    return _READERS[kind](file, str(path))


@contextlib.contextmanager
def _torch_file(path: PathLike, kind: str) -> Iterator[TorchCheckpoint]:
    with builtins.open(path, "rb") as file:
        yield _read_torch_file(file, path, kind)


@_no_foreign_exceptions
@paused_gc()
def load(path: PathLike, *, mmap: bool = True, writable: bool = False) -> Any:
    """The object saved in a checkpoint, with every tensor as a numpy array.

    mmap=True gives read-only views of the memory-mapped file (no copy); with writable=True the
    file is mapped copy-on-write instead, as torch.load(mmap=True) does: the arrays are writable
    and what is written stays in this process, never reaching the file. mmap=False gives owned,
    writable arrays. Tensors that share a storage in the file share memory here, with
    their offsets and strides. A safetensors file gives its {name: array} dict; a plain pickle
    its object (numpy arrays in it are owned copies).
    """
    kind = detect_format(path)
    if kind == "safetensors":
        return safetensors_io.read_safetensors(path, mmap=mmap, writable=writable)
    with _torch_file(path, kind) as checkpoint:
        return finish(checkpoint.load(mmap=mmap, writable=writable), str(path))


class Checkpoint(Mapping):
    """A lazy, read-only mapping over a checkpoint's state dict: `keys()`, `info(name)`, and
    `ckpt[name]`, which reads that one tensor (a view of the mapped file) and nothing more."""

    def __init__(self, path: PathLike) -> None:
        self.path = str(path)
        self._file = builtins.open(path, "rb")
        try:
            self._checkpoint = _read_torch_file(self._file, path, detect_format(path))
            entries = finish(self._checkpoint.info_object(), self.path)
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
        if type(entry) is not TensorInfo:
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


@_no_foreign_exceptions
@paused_gc()
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
    check_savable(obj)
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


# The types save writes: what torch.load(weights_only=True) reads back (its allowlist has no
# frozenset, no subclasses of these, no other objects).
_SAVABLE_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, MetaTensor)
_SAVABLE_CONTAINERS = (dict, collections.OrderedDict, list, tuple, set)
# The writer nests Python calls for nested containers; deeper objects are refused up front.
SAVE_MAX_DEPTH = 200


def check_savable(obj: Any) -> None:
    """Refuse, before writing anything, what torch.load(weights_only=True) or our own load would
    not read back: other types (frozenset, subclasses, objects), cycles through tuples, nesting
    deeper than SAVE_MAX_DEPTH, and OrderedDict attributes that load refuses."""
    limit = min(SAVE_MAX_DEPTH, LIMITS.max_depth)
    done: set = set()
    on_path: set = set()
    stack: List[Tuple[Any, Optional[Iterator[Any]], str]] = [(obj, None, "obj")]
    while stack:
        node, items, where = stack.pop()
        kind = type(node)
        if items is None:
            if kind in _SAVABLE_LEAVES or isinstance(node, (np.ndarray, np.generic)):
                continue
            if kind not in _SAVABLE_CONTAINERS:
                hint = "; use a set or a tuple" if kind is frozenset else ""
                raise PickleIOError(
                    f"cannot save {where}: a {kind.__name__}, which torch.load(weights_only=True) "
                    f"does not read{hint} (savable: dict, OrderedDict, list, tuple, set, numpy "
                    "arrays and scalars, str, bytes, bytearray, int, float, complex, bool, None, "
                    "MetaTensor)")
            if id(node) in on_path:
                if kind is tuple:
                    raise PickleIOError(f"cannot save {where}: a tuple that contains itself")
                continue
            if id(node) in done:
                continue
            if len(on_path) >= limit:
                raise PickleIOError(f"cannot save {where}: nests deeper than {limit} containers")
            if kind is collections.OrderedDict:
                _check_attributes(node, where)
            on_path.add(id(node))
            stack.append((node, iter(children(node)), where))
            continue
        child = next(items, _DONE)
        if child is _DONE:
            on_path.discard(id(node))
            done.add(id(node))
            continue
        stack.append((node, items, where))
        stack.append((child, None, f"{where}[...]"))


_DONE = object()


def _check_attributes(node: collections.OrderedDict, where: str) -> None:
    for name in vars(node):
        if type(name) is not str or name.startswith("__") or hasattr(collections.OrderedDict, name):
            raise PickleIOError(f"cannot save {where}: OrderedDict attribute {describe(name)}")


def _key_name(key: Any) -> str:
    if type(key) is int and key.bit_length() > 4000:  # str() refuses ints of over 4300 digits
        return f"<{key.bit_length()}-bit int>"
    try:
        return str(key)
    except Exception:  # noqa: BLE001  (a key whose str() fails)
        return f"<{type(key).__name__}>"


def _flatten(root: Any) -> List[TensorSummary]:
    """Every tensor under `root` with its dotted name. Each container is expanded once (the
    first name it is reached by), so shared and cyclic structure costs its size, not its paths."""
    found: List[TensorSummary] = []
    expanded = set()
    stack: List[Tuple[Any, str]] = [(root, "")]
    while stack:
        value, name = stack.pop()
        kind = type(value)
        if kind is TensorInfo:
            found.append(TensorSummary(name, value.dtype.name, value.shape, value.nbytes,
                                       value.storage_key))
        elif kind is StorageRef:  # a bare storage
            dtype = storage_dtype(value, name) or np.dtype(np.uint8)
            found.append(TensorSummary(name, dtype.name, (value.numel,),
                                       value.numel * dtype.itemsize, value.key))
        elif kind is np.ndarray:  # from a plain pickle
            found.append(TensorSummary(name, value.dtype.name, value.shape, value.nbytes, None))
        elif kind is MetaTensor:
            found.append(TensorSummary(name, value.dtype.name, value.shape, 0, None))
        elif kind in CONTAINER_TYPES and kind not in (set, frozenset):
            if id(value) in expanded:
                continue
            expanded.add(id(value))
            if kind is dict or kind is collections.OrderedDict:
                items = [(f"{name}.{_key_name(key)}" if name else _key_name(key), item)
                         for key, item in dict.items(value)]
            else:
                items = [(f"{name}.{index}" if name else str(index), item)
                         for index, item in enumerate(value)]
            stack.extend((item, item_name) for item_name, item in reversed(items))
    return found


@_no_foreign_exceptions
def inspect(path: PathLike) -> CheckpointSummary:
    """The tensors of a checkpoint (name, dtype, shape, bytes) without reading their data.
    Nested containers give dotted names (`optimizer.state.0.exp_avg`)."""
    kind = detect_format(path)
    if kind == "safetensors":
        tensors = [TensorSummary(name, dtype.name, shape, dtype.itemsize * math.prod(shape), None)
                   for name, dtype, shape in safetensors_io.tensor_table(path)]
        return CheckpointSummary(str(path), kind, tensors)
    with _torch_file(path, kind) as checkpoint:
        found = _flatten(finish(checkpoint.info_object(), str(path)))
    return CheckpointSummary(str(path), kind, found)
