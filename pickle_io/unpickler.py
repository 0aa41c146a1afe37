"""A safe pickle virtual machine for PyTorch checkpoints.

It implements every opcode of pickle protocols 0 to 5 itself (never `pickle.load`), resolves
globals through an exact allowlist of (module, name) pairs to inert markers or to our own rebuild
functions (never importing a module), and keeps its memo in a dict, so a huge memo index is just a
key. Tensors and storages are delegated to a `TensorSource`, so the same machine builds numpy
arrays (`load`), records tensor metadata without touching data (`open`, `inspect`), or plans a
legacy file's layout.
"""

from __future__ import annotations

import codecs
import collections
import re
import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import numpy as np

from pickle_io import dtypes
from pickle_io.errors import (CheckpointError, PickleIOError, UnsafePickleError,
                              UnsupportedTensorError, describe)
from pickle_io.limits import LIMITS

HIGHEST_PROTOCOL = 5
_U32 = struct.Struct("<I")


# ----- what the allowlisted globals resolve to -----------------------------------------------


@dataclass(frozen=True, slots=True)
class StorageClass:
    """`torch.FloatStorage` and friends; dtype_name None means `torch.UntypedStorage` (bytes).
    `unsupported` names a storage class numpy cannot hold (the quantized ones)."""

    qualified_name: str
    dtype_name: Optional[str]
    unsupported: Optional[str] = None


@dataclass(frozen=True, slots=True)
class TorchDtype:
    """A dtype global such as `torch.float8_e4m3fn` (the last argument of `_rebuild_tensor_v3`);
    `supported` is False for those numpy has no type for (complex32, bits8, qint8, ...)."""

    name: str
    supported: bool = True


@dataclass(frozen=True, slots=True)
class TensorClass:
    """`torch.Tensor` or `torch.nn.Parameter`, named by `_rebuild_from_type_v2`; never called."""

    qualified_name: str


@dataclass(frozen=True, slots=True)
class InertGlobal:
    """An allowlisted global that is only ever an argument (`numpy.ndarray`, a quantization
    scheme, a sparse layout); never called."""

    qualified_name: str


@dataclass(frozen=True, slots=True)
class AllowedCallable:
    """An allowlisted global that REDUCE/NEWOBJ/INST/OBJ may call: runs our function, not torch's."""

    qualified_name: str
    function: Callable[..., Any]  # function(vm, *args)

    def __call__(self, vm: "Unpickler", args: tuple) -> Any:
        return self.function(vm, *args)


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A validated persistent id `('storage', type, key, location, numel[, view_metadata])`."""

    key: str
    dtype_name: Optional[str]  # None: untyped storage, numel counts bytes
    location: str
    numel: int
    view: Optional[Tuple[str, int, int]]  # legacy storage view: (view key, offset, numel)


@dataclass(frozen=True, slots=True)
class MetaTensor:
    """A tensor on torch's "meta" device: shape, dtype and stride, and no data at all.

    State dicts created under `torch.device("meta")` hold these; `load` returns this placeholder
    for each, and `save` writes it back as a meta tensor (`_rebuild_meta_tensor_no_storage`)."""

    dtype: np.dtype
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]

    __hash__ = None  # type: ignore[assignment]  (torch tensors are no dict keys either)

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A harmless tensor numpy cannot hold (sparse, quantized, nested, complex32, ...): raised as
    an UnsupportedTensorError naming it once the pickle says where it sits."""

    what: str

    __hash__ = None  # type: ignore[assignment]


class PendingDtype:
    """`numpy.dtype(code, align, copy)` before the BUILD that sets its byte order."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype


class PendingArray:
    """`numpy.core.multiarray._reconstruct(ndarray, (0,), b"b")` before its BUILD gives it data."""

    __slots__ = ("array",)
    __hash__ = None  # type: ignore[assignment]  (numpy arrays are unhashable)

    def __init__(self) -> None:
        self.array: Optional[np.ndarray] = None


class TensorSource(Protocol):
    """What the machine asks for when the pickle names a storage or rebuilds a tensor."""

    def storage(self, ref: StorageRef) -> Any:
        ...

    def tensor(self, storage: Any, dtype_name: Optional[str], offset: int, shape: tuple,
               stride: tuple, conj: bool = False, neg: bool = False) -> Any:
        ...


# ----- the allowlisted functions: torch ------------------------------------------------------


def _is_int(value: Any) -> bool:
    return type(value) is int


_INT = frozenset((int,))  # exactly int: a bool is no size


def _int_tuple(value: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(value, tuple) or not _INT.issuperset(map(type, value)):
        raise CheckpointError(f"{what} must be a tuple of ints, got {describe(value)}")
    return value


def _check_sizes(size: Any, stride: Any) -> Tuple[tuple, tuple]:
    size = _int_tuple(size, "tensor size")
    stride = _int_tuple(stride, "tensor stride")
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {size} and stride {stride} differ in length")
    if size and (min(size) < 0 or min(stride) < 0):
        raise CheckpointError(f"negative tensor size/stride: {size}, {stride}")
    return size, stride


# What torch's get_tensor_metadata writes (only when true): the lazy conjugate and negative bits.
_TENSOR_METADATA_KEYS = ("conj", "neg")


def _tensor_flags(metadata: Any) -> Tuple[bool, bool]:
    if not metadata:
        return False, False
    if not isinstance(metadata, dict):
        raise CheckpointError(f"tensor metadata is a {type(metadata).__name__}, not a dict")
    for key, value in metadata.items():
        if key not in _TENSOR_METADATA_KEYS or type(value) is not bool:
            raise CheckpointError(
                f"unknown tensor metadata {describe(key, 40)}: {describe(value, 40)} (torch writes "
                "only conj and neg)")
    return metadata.get("conj", False), metadata.get("neg", False)


def _rebuild_tensor(vm: "Unpickler", storage, offset, size, stride, dtype_name=None,
                    metadata=None):
    if type(storage) is Unsupported:
        return storage
    if not _is_int(offset) or offset < 0:
        raise CheckpointError(f"tensor storage offset must be an int >= 0, got {describe(offset)}")
    size, stride = _check_sizes(size, stride)
    conj, neg = _tensor_flags(metadata)
    if conj or neg:
        return vm.source.tensor(storage, dtype_name, offset, size, stride, conj, neg)
    return vm.source.tensor(storage, dtype_name, offset, size, stride)


def _rebuild_tensor_v1(vm, storage, offset, size, stride):
    return _rebuild_tensor(vm, storage, offset, tuple(size), tuple(stride))


def _rebuild_tensor_v2(vm, storage, offset, size, stride, requires_grad, hooks, metadata=None):
    return _rebuild_tensor(vm, storage, offset, size, stride, None, metadata)


def _rebuild_tensor_v3(
    vm, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None
):
    if not isinstance(dtype, TorchDtype):
        raise CheckpointError(f"_rebuild_tensor_v3 expects a torch dtype, got {describe(dtype)}")
    if not dtype.supported:
        return Unsupported(f"a torch.{dtype.name} tensor")
    return _rebuild_tensor(vm, storage, offset, size, stride, dtype.name, metadata)


def _rebuild_meta_tensor_no_storage(vm, dtype, size, stride, requires_grad=False):
    if not isinstance(dtype, TorchDtype):
        raise CheckpointError(f"meta tensor of dtype {describe(dtype)}")
    numpy_dtype = dtypes.numpy_dtype(dtype.name) if dtype.supported else None
    if numpy_dtype is None:
        return Unsupported(f"a torch.{dtype.name} meta tensor")
    size, stride = _check_sizes(size, stride)
    return MetaTensor(numpy_dtype, size, stride)


def _rebuild_parameter(vm, data, requires_grad, hooks, state=None):
    # A Parameter is its data: requires_grad, hooks and Python attributes have no numpy meaning.
    return data


def _rebuild_from_type_v2(vm, function, new_type, args, state):
    if not isinstance(function, AllowedCallable) or not isinstance(args, tuple):
        raise UnsafePickleError(f"_rebuild_from_type_v2 with callable {describe(function)}")
    if not isinstance(new_type, TensorClass):
        raise UnsafePickleError(f"_rebuild_from_type_v2 to type {describe(new_type)}")
    return function(vm, args)


def _unsupported(what: str) -> Callable[..., Unsupported]:
    def rebuild(vm, *args):
        detail = f" ({args[0].qualified_name})" if args and isinstance(args[0], InertGlobal) else ""
        return Unsupported(what + detail)
    return rebuild


def _get_layout(vm, name):
    if not isinstance(name, str):
        raise CheckpointError(f"torch layout name {describe(name)}")
    return InertGlobal(name)


def _ordered_dict(vm, items=()):
    result = collections.OrderedDict()
    if not items and isinstance(items, (list, tuple, dict)):  # a tensor's empty hooks, each time
        return result
    if isinstance(items, dict):
        items = list(items.items())
    if not isinstance(items, (list, tuple)) or not all(
            isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in items):
        raise CheckpointError(f"OrderedDict of {describe(items)} (not a list of pairs)")
    # Python 2-era torch wrote OrderedDict([[key, value], ...]); torch.load reads it.
    vm.insert_pairs(result, [item for pair in items for item in pair])
    return result


def _torch_size(vm, dims=()):
    return _int_tuple(tuple(dims) if isinstance(dims, (list, tuple)) else dims, "torch.Size")


def _torch_device(vm, kind, index=None):
    if not isinstance(kind, str) or not (index is None or _is_int(index)):
        raise CheckpointError(f"bad torch.device arguments {describe(kind, 40)}, {describe(index, 40)}")
    return kind if index is None else f"{kind}:{index}"


_LATIN1 = ("latin1", "latin-1")


def _codecs_encode(vm, text, encoding="latin1"):
    # Protocols 0-2 pickle bytes as _codecs.encode(<latin-1 str>, "latin1").
    if not isinstance(text, str) or encoding not in _LATIN1:
        raise UnsafePickleError(f"_codecs.encode with encoding {describe(encoding, 40)}")
    return text.encode("latin1")


def _builtin_set(vm, items=()):
    items = _members(items, "set")
    vm.check_hashes(None, items)
    return set(items)


def _builtin_frozenset(vm, items=()):
    items = _members(items, "frozenset")
    vm.check_hashes(None, items)
    return frozenset(items)


def _members(items: Any, what: str) -> Any:
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise CheckpointError(f"{what}() of a {type(items).__name__}")
    return items


def _builtin_complex(vm, real=0.0, imag=0.0):
    if not all(type(part) in (int, float) for part in (real, imag)):
        raise CheckpointError(f"complex() of {describe(real, 40)}, {describe(imag, 40)}")
    return complex(real, imag)


def _builtin_bytes(vm, data=b""):
    # Protocol 2 pickles b"" as bytes() (other bytes go through _codecs.encode).
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"bytes() of {type(data).__name__}")
    return bytes(data)


def _builtin_bytearray(vm, data=b"", encoding=None):
    # Protocols 0 and 1 pickle bytearray(b"ab") as bytearray("ab", "latin-1").
    if isinstance(data, str) and encoding in _LATIN1:
        return bytearray(data, "latin-1")
    if not isinstance(data, (bytes, bytearray)) or encoding is not None:
        raise CheckpointError(f"bytearray() of {type(data).__name__}")
    return bytearray(data)


# ----- the allowlisted functions: numpy (plain pickles of arrays, dtypes and scalars) --------

# The type codes numpy.dtype is pickled with: numbers and bool, bytes/str/void of a size,
# datetime64/timedelta64. Never "O": object arrays hold pickled Python objects.
_NUMPY_TYPECODE = re.compile(r"(?:[biufc]\d{1,2}|[SUV]\d{1,9}|[Mm]8)\Z")
_DATETIME_UNITS = {"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as", "generic"}
_NUMPY_NDARRAY = InertGlobal("numpy.ndarray")


def _np_dtype(vm, code, align=False, copy=True):
    if not isinstance(code, str):
        raise CheckpointError(f"numpy.dtype({describe(code)})")
    if code.startswith("O"):
        raise UnsafePickleError("numpy object dtype (its arrays hold pickled Python objects)")
    if not _NUMPY_TYPECODE.match(code):
        raise CheckpointError(f"unsupported numpy dtype {describe(code, 40)}")
    try:
        return PendingDtype(np.dtype(code))
    except (TypeError, ValueError):
        raise CheckpointError(f"unsupported numpy dtype {describe(code, 40)}") from None


def _build_dtype(vm, pending: PendingDtype, state: Any) -> None:
    # state: (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise CheckpointError(f"numpy dtype state {describe(state)}")
    byteorder, subarray, names, fields, elsize = state[1:6]
    if subarray is not None or names is not None or fields is not None:
        raise CheckpointError("structured and subarray numpy dtypes are not supported")
    dtype = pending.dtype
    if dtype.kind in "Mm":
        dtype = _datetime_dtype(dtype.kind, state[8] if len(state) == 9 else None)
    if byteorder not in ("<", ">", "|", "="):
        raise CheckpointError(f"numpy dtype byte order {describe(byteorder, 20)}")
    if byteorder in "<>":
        dtype = dtype.newbyteorder(byteorder)
    if elsize not in (-1, dtype.itemsize):
        raise CheckpointError(f"numpy dtype {dtype} with element size {describe(elsize, 20)}")
    pending.dtype = dtype


def _datetime_dtype(kind: str, metadata: Any) -> np.dtype:
    # numpy writes (unit, num, den, events), alone or after a metadata dict (None).
    if isinstance(metadata, tuple) and len(metadata) == 2 and isinstance(metadata[1], tuple):
        metadata = metadata[1]
    if not (isinstance(metadata, tuple) and len(metadata) == 4):
        raise CheckpointError(f"numpy datetime dtype metadata {describe(metadata)}")
    unit, num, den, events = metadata
    unit = unit.decode("ascii", "replace") if isinstance(unit, bytes) else unit
    if unit not in _DATETIME_UNITS or not _is_int(num) or not 0 < num < 2**31 or (den, events) != (1, 1):
        raise CheckpointError(f"numpy datetime dtype metadata {describe(metadata)}")
    return np.dtype(f"{kind}8[{num}{unit}]")


def _resolve_dtype(value: Any) -> np.dtype:
    if type(value) is not PendingDtype:
        raise CheckpointError(f"numpy array of dtype {describe(value)}")
    return value.dtype


def _np_shape(shape: Any) -> Tuple[int, ...]:
    shape = tuple(shape) if isinstance(shape, list) else shape
    shape = _int_tuple(shape, "numpy array shape")
    if len(shape) > 32 or any(n < 0 for n in shape):
        raise CheckpointError(f"numpy array shape {describe(shape)}")
    return shape


def _np_array(data: Any, dtype: np.dtype, shape: tuple, fortran: bool) -> np.ndarray:
    count = 1
    for size in shape:
        count *= size
    if count * dtype.itemsize != len(data):
        raise CheckpointError(
            f"numpy array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} "
            f"bytes, has {len(data)}")
    if count == 0:
        return np.empty(shape, dtype, order="F" if fortran else "C")
    return np.frombuffer(data, dtype, count=count).reshape(shape, order="F" if fortran else "C")


def _np_reconstruct(vm, cls, shape, typecode):
    if cls != _NUMPY_NDARRAY:
        raise UnsafePickleError(f"numpy _reconstruct of {describe(cls)} (only numpy.ndarray)")
    if shape != (0,) or typecode not in (b"b", "b"):
        raise CheckpointError(f"numpy _reconstruct({describe(shape)}, {describe(typecode)})")
    return PendingArray()


def _build_array(vm, pending: PendingArray, state: Any) -> None:
    # state: (version, shape, dtype, is_fortran, raw data); numpy < 1.? wrote it without version
    if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4 or pending.array is not None:
        raise CheckpointError(f"numpy array state {describe(state)}")
    shape, dtype, fortran, data = state
    dtype = _resolve_dtype(dtype)
    if isinstance(data, list):
        raise UnsafePickleError("numpy object array (its items are pickled Python objects)")
    data = vm.raw_bytes(data)
    if fortran not in (True, False):
        raise CheckpointError(f"numpy array order flag {describe(fortran, 20)}")
    # A copy: numpy's unpickler gives owned, writable arrays too.
    array = _np_array(data, dtype, _np_shape(shape), bool(fortran))
    # numpy's own setstate gives arrays in native byte order (its _frombuffer does not).
    pending.array = array.astype(dtype.newbyteorder("="), order="K") if not dtype.isnative \
        else array.copy(order="K")


def _np_frombuffer(vm, data, dtype, shape, order="C"):
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"numpy _frombuffer of a {type(data).__name__}")
    if order not in ("C", "F"):
        raise CheckpointError(f"numpy array order {describe(order, 20)}")
    return _np_array(data, _resolve_dtype(dtype), _np_shape(shape), order == "F")


def _np_scalar(vm, dtype, data=None):
    dtype = _resolve_dtype(dtype)
    data = vm.raw_bytes(data)
    if len(data) != dtype.itemsize:
        raise CheckpointError(f"numpy {dtype} scalar of {len(data)} bytes")
    return np.frombuffer(data, dtype, count=1)[0]


def _build_allowlist() -> Dict[Tuple[str, str], Any]:
    allowed: Dict[Tuple[str, str], Any] = {}

    def allow_callable(module: str, name: str, function: Callable[..., Any]) -> None:
        allowed[(module, name)] = AllowedCallable(f"{module}.{name}", function)

    for name, function in (
        ("_rebuild_tensor", _rebuild_tensor_v1),
        ("_rebuild_tensor_v2", _rebuild_tensor_v2),
        ("_rebuild_tensor_v3", _rebuild_tensor_v3),
        ("_rebuild_parameter", _rebuild_parameter),
        ("_rebuild_parameter_with_state", _rebuild_parameter),
        ("_rebuild_meta_tensor_no_storage", _rebuild_meta_tensor_no_storage),
        ("_rebuild_sparse_tensor", _unsupported("a sparse tensor")),
        ("_rebuild_qtensor", _unsupported("a quantized tensor")),
        ("_rebuild_nested_tensor", _unsupported("a nested tensor")),
        ("_rebuild_wrapper_subclass", _unsupported("a tensor subclass")),
        ("_rebuild_device_tensor_from_numpy", _unsupported("a device (XLA) tensor")),
        ("_rebuild_device_tensor_from_cpu_tensor", _unsupported("a device (XLA) tensor")),
    ):
        allow_callable("torch._utils", name, function)
    allow_callable("torch._tensor", "_rebuild_from_type_v2", _rebuild_from_type_v2)
    allow_callable("torch.serialization", "_get_layout", _get_layout)
    allow_callable("collections", "OrderedDict", _ordered_dict)
    allow_callable("torch", "Size", _torch_size)
    allow_callable("torch", "device", _torch_device)
    allow_callable("_codecs", "encode", _codecs_encode)
    for module in ("builtins", "__builtin__"):  # protocol 2 files from Python 2 say __builtin__
        allow_callable(module, "set", _builtin_set)
        allow_callable(module, "frozenset", _builtin_frozenset)
        allow_callable(module, "complex", _builtin_complex)
        allow_callable(module, "bytearray", _builtin_bytearray)
        allow_callable(module, "bytes", _builtin_bytes)
    for module, name in (("torch", "Tensor"), ("torch._tensor", "Tensor"),
                         ("torch.nn.parameter", "Parameter")):
        allowed[(module, name)] = TensorClass(f"{module}.{name}")
    for class_name, dtype_name in dtypes.STORAGE_CLASS_DTYPES.items():
        for module in ("torch", "torch.cuda"):
            allowed[(module, class_name)] = StorageClass(f"{module}.{class_name}", dtype_name)
    for class_name in dtypes.UNSUPPORTED_STORAGE_CLASSES:
        for module in ("torch", "torch.cuda"):
            allowed[(module, class_name)] = StorageClass(
                f"{module}.{class_name}", None, f"a quantized storage (torch.{class_name})")
    for module in ("torch", "torch.storage"):
        allowed[(module, "UntypedStorage")] = StorageClass(f"{module}.UntypedStorage", None)
    for name in list(dtypes.DTYPE_BY_TORCH_NAME) + list(dtypes.TORCH_DTYPE_ALIASES):
        allowed[("torch", name)] = TorchDtype(dtypes.TORCH_DTYPE_ALIASES.get(name, name))
    for name in dtypes.UNSUPPORTED_TORCH_DTYPES:
        allowed[("torch", name)] = TorchDtype(name, supported=False)
    for name in ("per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
                 "per_channel_symmetric", "per_channel_affine_float_qparams"):
        allowed[("torch", name)] = InertGlobal(f"torch.{name}")
    for core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spell the module differently
        allow_callable(f"{core}.multiarray", "_reconstruct", _np_reconstruct)
        allow_callable(f"{core}.multiarray", "scalar", _np_scalar)
        allow_callable(f"{core}.numeric", "_frombuffer", _np_frombuffer)
    allowed[("numpy", "ndarray")] = _NUMPY_NDARRAY
    allow_callable("numpy", "dtype", _np_dtype)
    return allowed


ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = _build_allowlist()


def resolve_global(module: str, name: str, filename: str) -> Any:
    """The marker or function for an allowlisted global; UnsafePickleError for anything else."""
    try:
        return ALLOWED_GLOBALS[(module, name)]
    except (KeyError, TypeError):
        pass
    raise UnsafePickleError(f"{filename}: forbidden global {module[:100]}.{name[:100]}")


def parse_storage_id(pid: Any, filename: str) -> StorageRef:
    """Validate a persistent id naming a storage."""
    if not isinstance(pid, tuple) or len(pid) not in (5, 6):
        raise CheckpointError(f"{filename}: unsupported persistent id {describe(pid, 120)}")
    typename, storage_class, key, location, numel = pid[:5]
    view = pid[5] if len(pid) == 6 else None
    if isinstance(typename, bytes):
        typename = typename.decode("ascii", "replace")
    if typename != "storage":
        raise CheckpointError(f"{filename}: unsupported persistent id of type {describe(typename, 40)}")
    if not isinstance(storage_class, StorageClass):
        raise CheckpointError(f"{filename}: storage type is {describe(storage_class)}")
    if isinstance(key, int) and not isinstance(key, bool):
        if key.bit_length() > 256:
            raise CheckpointError(f"{filename}: storage key is a {key.bit_length()}-bit int")
        key = str(key)
    if not isinstance(key, str) or not key or not key.replace("_", "").isalnum() or not key.isascii():
        raise CheckpointError(f"{filename}: bad storage key {describe(key)}")
    if isinstance(location, bytes):
        location = location.decode("ascii", "replace")
    if not isinstance(location, str) or not _is_int(numel) or numel < 0:
        raise CheckpointError(
            f"{filename}: bad storage location/size {describe(location, 40)}, {describe(numel, 40)}")
    if view is not None:
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and _is_int(view[1]) and _is_int(view[2]) and view[1] >= 0 and view[2] >= 0):
            raise CheckpointError(f"{filename}: bad storage view {describe(view)}")
    return StorageRef(key, storage_class.dtype_name, location, numel, view)


# ----- the machine ---------------------------------------------------------------------------


class TruncatedPickle(CheckpointError):
    """The pickle runs past the end of the data it was given."""


class _Stop(Exception):
    """Raised by STOP to leave the opcode loop with the result."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _Mark:
    """The object MARK pushes (a separate stack would also do; this keeps the loop simple)."""


_MARK = _Mark()


class Unpickler:
    """Run one pickle from `data[start:]`; `load()` returns (object, end position)."""

    def __init__(self, data: Any, *, filename: str, source: Optional[TensorSource],
                 start: int = 0, end: Optional[int] = None) -> None:
        self.data = data  # bytes, bytearray or mmap: indexing gives ints, slicing gives bytes
        self.filename = filename
        self.source = source
        self.position = start
        self.end = len(data) if end is None else end
        self.stack: List[Any] = []
        self.memo: Dict[int, Any] = {}
        self.unsupported: List[Unsupported] = []  # tensors numpy cannot hold, met so far
        self._py2_strings: Dict[int, Tuple[str, bytes]] = {}  # id(str) -> (str, its raw bytes)
        self._hash_counts: Dict[Tuple[int, int], int] = {}  # (id(container), hash) -> keys
        self._heights: Dict[int, Tuple[int, Any]] = {}  # id(tuple) -> (nesting height, tuple)

    # -- reading the opcode stream --

    def _read(self, count: int) -> bytes:
        if count < 0 or count > self.end - self.position:
            raise TruncatedPickle(
                f"{self.filename}: truncated pickle: {count} bytes wanted at byte "
                f"{self.position}, {self.end - self.position} left")
        chunk = self.data[self.position:self.position + count]
        self.position += count
        return chunk

    def _read_byte(self) -> int:
        position = self.position
        if position >= self.end:
            raise TruncatedPickle(f"{self.filename}: truncated pickle at byte {position}")
        self.position = position + 1
        return self.data[position]

    def _read_line(self) -> bytes:
        newline = self.data.find(b"\n", self.position, self.end)
        if newline < 0:
            raise TruncatedPickle(f"{self.filename}: truncated pickle: unterminated line")
        line = self.data[self.position:newline]
        self.position = newline + 1
        return line

    def _read_uint(self, size: int) -> int:
        return int.from_bytes(self._read(size), "little")

    def _read_u32(self) -> int:
        position = self.position
        if position + 4 > self.end:
            raise TruncatedPickle(f"{self.filename}: truncated pickle at byte {position}")
        self.position = position + 4
        return _U32.unpack_from(self.data, position)[0]

    def _pop_mark(self) -> List[Any]:
        """The items above the topmost MARK, removing them and the mark."""
        stack = self.stack
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is _MARK:
                items = stack[index + 1:]
                del stack[index:]
                return items
        raise CheckpointError(f"{self.filename}: pickle has no MARK where one is needed")

    def _pop(self) -> Any:
        stack = self.stack
        if not stack or stack[-1] is _MARK:
            raise CheckpointError(f"{self.filename}: pickle stack underflow")
        return stack.pop()

    def _top(self) -> Any:
        stack = self.stack
        if not stack or stack[-1] is _MARK:
            raise CheckpointError(f"{self.filename}: pickle stack underflow")
        return stack[-1]

    def load(self) -> Tuple[Any, int]:
        dispatch, data, end = _DISPATCH, self.data, self.end
        opcode_position = self.position
        try:
            while True:
                opcode_position = self.position
                if opcode_position >= end:
                    raise TruncatedPickle(f"{self.filename}: truncated pickle (no STOP)")
                self.position = opcode_position + 1
                dispatch[data[opcode_position]](self)
        except _Stop as stop:
            if self.unsupported:
                raise UnsupportedTensorError(
                    f"{self.filename}: {self.unsupported[0].what} is not supported") from None
            return stop.value, self.position
        except PickleIOError as error:
            if type(error) in (CheckpointError, UnsafePickleError) and not str(error).startswith(
                    self.filename):  # raised by an allowlisted function: say where
                raise type(error)(f"{self.filename}: {error} (at byte {opcode_position})") from None
            raise
        except RecursionError:
            raise CheckpointError(f"{self.filename}: pickle nests too deeply") from None
        except Exception as error:  # a malformed stream (bad types, unhashable keys...)
            raise CheckpointError(
                f"{self.filename}: malformed pickle at byte {opcode_position}: "
                f"{type(error).__name__}: {describe(str(error), 200)}") from None

    # -- checks on what the pickle builds --

    def check_hashes(self, container: Any, keys: Any) -> None:
        """Refuse dict keys / set members that would crash hash() (tuples nested past the depth
        limit) or that collide (many keys of one hash make each insertion scan the others).
        str and bytes are skipped: their hashes are randomized per process."""
        counts = self._hash_counts
        limit = LIMITS.max_equal_hashes
        container_id = id(container) if container is not None else id(keys)
        for key in keys:
            kind = type(key)
            if kind is str or kind is bytes:
                continue
            if kind is tuple or kind is frozenset:
                self._check_height(key)
            try:
                slot = (container_id, hash(key))
            except TypeError:
                raise CheckpointError(
                    f"{self.filename}: a {kind.__name__} used as a dict key or set member "
                    "(unhashable)") from None
            count = counts.get(slot, 0) + 1
            if count > limit:
                raise CheckpointError(
                    f"{self.filename}: more than {limit} keys of one dict or set share a hash "
                    "value (a hash-collision attack; pickle_io.LIMITS.max_equal_hashes)")
            counts[slot] = count

    def _check_height(self, root: Any) -> None:
        """Raise if tuples/frozensets nest deeper than the limit under `root` (hash() of a
        1M-deep tuple overflows the C stack). Each tuple is measured once."""
        heights, limit = self._heights, LIMITS.max_depth
        if id(root) in heights:
            return
        stack: List[Any] = [[root, iter(root), 0]]
        while stack:
            frame = stack[-1]
            for child in frame[1]:
                kind = type(child)
                if kind is tuple or kind is frozenset:
                    known = heights.get(id(child))
                    if known is None:
                        if len(stack) >= limit:
                            raise _too_deep(self.filename)
                        stack.append([child, iter(child), 0])
                        break
                    frame[2] = max(frame[2], known[0])
            else:
                stack.pop()
                height = frame[2] + 1
                if height > limit:
                    raise _too_deep(self.filename)
                heights[id(frame[0])] = (height, frame[0])  # keeps it alive: ids stay unique
                if stack:
                    stack[-1][2] = max(stack[-1][2], height)

    def insert_pairs(self, target: dict, items: List[Any]) -> None:
        """target[key] = value for the (key, value, key, value, ...) list, checked."""
        keys = items[0::2]
        if not _RANDOMIZED_HASH_TYPES.issuperset(map(type, keys)):
            self.check_hashes(target, keys)
        values = items[1::2]
        target.update(zip(keys, values))
        if self.unsupported:
            for key, value in zip(keys, values):
                if type(value) is Unsupported:
                    raise UnsupportedTensorError(
                        f"{self.filename}: tensor {describe(key)}: {value.what} is not supported")

    def raw_bytes(self, data: Any) -> bytes:
        """Bytes a numpy reconstructor was given: bytes, or a Python 2 str (its raw bytes)."""
        if isinstance(data, (bytes, bytearray)):
            return data
        if isinstance(data, str):
            known = self._py2_strings.get(id(data))
            if known is not None and known[0] is data:
                return known[1]
            try:
                return data.encode("latin1")
            except UnicodeEncodeError:
                pass
        raise CheckpointError(f"{self.filename}: numpy data is a {type(data).__name__}, not bytes")

    # -- calling allowlisted globals --

    def _call(self, function: Any, args: Any, opcode: str) -> Any:
        if not isinstance(function, AllowedCallable):
            raise UnsafePickleError(f"{self.filename}: {opcode} applied to {describe(function)}")
        if not isinstance(args, tuple):
            raise CheckpointError(f"{self.filename}: {opcode} arguments are not a tuple")
        result = function.function(self, *args)
        if type(result) is Unsupported:
            self.unsupported.append(result)
        return result

    def _global(self, module: Any, name: Any) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CheckpointError(f"{self.filename}: global names must be strings")
        return resolve_global(module, name, self.filename)

    def _persistent_load(self, pid: Any) -> Any:
        if self.source is None:
            raise UnsafePickleError(f"{self.filename}: persistent id in a pickle that allows none")
        if isinstance(pid, tuple) and len(pid) > 1 and isinstance(pid[1], StorageClass) \
                and pid[1].unsupported:
            marker = Unsupported(pid[1].unsupported)
            self.unsupported.append(marker)
            return marker
        return self.source.storage(parse_storage_id(pid, self.filename))

    # -- opcodes, grouped as in pickletools --

    def op_proto(self):
        version = self._read_byte()
        if version > HIGHEST_PROTOCOL:
            raise CheckpointError(f"{self.filename}: unsupported pickle protocol {version}")

    def op_frame(self):
        length = self._read_uint(8)
        if length > self.end - self.position:
            raise CheckpointError(f"{self.filename}: pickle frame longer than the data")

    def op_stop(self):
        raise _Stop(self._pop())

    def op_mark(self):
        self.stack.append(_MARK)

    def op_pop(self):
        if self.stack and self.stack[-1] is _MARK:
            self.stack.pop()
        else:
            self._pop()

    def op_pop_mark(self):
        self._pop_mark()

    def op_dup(self):
        self.stack.append(self._top())

    # integers and floats
    def op_int(self):
        line = self._read_line()
        if line == b"00":
            self.stack.append(False)
        elif line == b"01":
            self.stack.append(True)
        else:
            self.stack.append(int(line))

    def op_binint(self):
        self.stack.append(int.from_bytes(self._read(4), "little", signed=True))

    def op_binint1(self):
        self.stack.append(self._read_byte())

    def op_binint2(self):
        self.stack.append(self._read_uint(2))

    def op_long(self):
        line = self._read_line()
        self.stack.append(int(line[:-1] if line.endswith(b"L") else line))

    def op_long1(self):
        self.stack.append(int.from_bytes(self._read(self._read_byte()), "little", signed=True))

    def op_long4(self):
        length = int.from_bytes(self._read(4), "little", signed=True)
        if length < 0:
            raise CheckpointError(f"{self.filename}: negative LONG4 length")
        self.stack.append(int.from_bytes(self._read(length), "little", signed=True))

    def op_float(self):
        self.stack.append(float(self._read_line()))

    def op_binfloat(self):
        self.stack.append(struct.unpack(">d", self._read(8))[0])

    # constants
    def op_none(self):
        self.stack.append(None)

    def op_newtrue(self):
        self.stack.append(True)

    def op_newfalse(self):
        self.stack.append(False)

    # strings and bytes
    def _push_py2_string(self, raw: bytes) -> None:
        # A Python 2 str: torch.load decodes it as UTF-8 (its default encoding); we fall back
        # to latin-1 where that fails. numpy's reconstructors get the raw bytes back.
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin1")
        if not raw.isascii():  # ASCII text re-encodes to the same bytes
            self._py2_strings[id(text)] = (text, raw)
        self.stack.append(text)

    def op_string(self):
        line = self._read_line().rstrip(b"\r")
        if len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b"'", b'"'):
            raise CheckpointError(f"{self.filename}: STRING argument is not quoted")
        self._push_py2_string(codecs.escape_decode(line[1:-1])[0])

    def op_binstring(self):
        length = int.from_bytes(self._read(4), "little", signed=True)
        if length < 0:
            raise CheckpointError(f"{self.filename}: negative BINSTRING length")
        self._push_py2_string(bytes(self._read(length)))

    def op_short_binstring(self):
        self._push_py2_string(bytes(self._read(self._read_byte())))

    def op_unicode(self):
        self.stack.append(self._read_line().decode("raw_unicode_escape"))

    def _push_text(self, length: int) -> None:
        self.stack.append(str(self._read(length), "utf-8", "surrogatepass"))

    def op_short_binunicode(self):
        self._push_text(self._read_byte())

    def op_binunicode(self):
        self._push_text(self._read_u32())

    def op_binunicode8(self):
        self._push_text(self._read_uint(8))

    def op_short_binbytes(self):
        self.stack.append(bytes(self._read(self._read_byte())))

    def op_binbytes(self):
        self.stack.append(bytes(self._read(self._read_u32())))

    def op_binbytes8(self):
        self.stack.append(bytes(self._read(self._read_uint(8))))

    def op_bytearray8(self):
        self.stack.append(bytearray(self._read(self._read_uint(8))))

    def op_out_of_band(self):
        raise CheckpointError(f"{self.filename}: out-of-band pickle buffers are not supported")

    # containers
    def op_empty_tuple(self):
        self.stack.append(())

    def op_tuple(self):
        self.stack.append(tuple(self._pop_mark()))

    def op_tuple1(self):
        self.stack.append((self._pop(),))

    def op_tuple2(self):
        second = self._pop()
        self.stack.append((self._pop(), second))

    def op_tuple3(self):
        third = self._pop()
        second = self._pop()
        self.stack.append((self._pop(), second, third))

    def op_empty_list(self):
        self.stack.append([])

    def op_list(self):
        self.stack.append(self._pop_mark())

    def op_append(self):
        value = self._pop()
        self._append_items(self._top(), [value])

    def op_appends(self):
        items = self._pop_mark()
        self._append_items(self._top(), items)

    def _append_items(self, target: Any, items: List[Any]) -> None:
        if not isinstance(target, list):
            raise CheckpointError(f"{self.filename}: APPEND(S) to a {type(target).__name__}")
        target.extend(items)

    def op_empty_dict(self):
        self.stack.append({})

    def op_dict(self):
        items = self._pop_mark()
        result: dict = {}
        self.stack.append(result)
        self._pairs_into(result, items)

    def op_setitem(self):
        value = self._pop()
        key = self._pop()
        self._pairs_into(self._top(), [key, value])

    def op_setitems(self):
        items = self._pop_mark()
        self._pairs_into(self._top(), items)

    def _pairs_into(self, target: Any, items: List[Any]) -> Any:
        if not isinstance(target, dict):
            raise CheckpointError(f"{self.filename}: SETITEM(S) on a {type(target).__name__}")
        if len(items) % 2:
            raise CheckpointError(f"{self.filename}: odd number of dict items")
        self.insert_pairs(target, items)
        return target

    def op_empty_set(self):
        self.stack.append(set())

    def op_additems(self):
        items = self._pop_mark()
        target = self._top()
        if not isinstance(target, set):
            raise CheckpointError(f"{self.filename}: ADDITEMS on a {type(target).__name__}")
        self.check_hashes(target, items)
        target.update(items)

    def op_frozenset(self):
        items = self._pop_mark()
        self.check_hashes(None, items)
        self.stack.append(frozenset(items))

    # memo
    def _get(self, index: int) -> None:
        value = self.memo.get(index, _MARK)  # never memoized: PUT refuses a MARK
        if value is _MARK:
            raise CheckpointError(f"{self.filename}: pickle memo has no entry {index}")
        self.stack.append(value)

    def op_get(self):
        self._get(int(self._read_line()))

    def op_binget(self):
        self._get(self._read_byte())

    def op_long_binget(self):
        self._get(self._read_u32())

    def op_put(self):
        self.memo[int(self._read_line())] = self._top()

    def op_binput(self):
        self.memo[self._read_byte()] = self._top()

    def op_long_binput(self):
        self.memo[self._read_u32()] = self._top()

    def op_memoize(self):
        self.memo[len(self.memo)] = self._top()

    # globals and calls
    def op_global(self):
        module = self._read_line().decode("utf-8")
        name = self._read_line().decode("utf-8")
        self.stack.append(self._global(module, name))

    def op_stack_global(self):
        name = self._pop()
        module = self._pop()
        self.stack.append(self._global(module, name))

    def op_inst(self):
        module = self._read_line().decode("utf-8")
        name = self._read_line().decode("utf-8")
        function = self._global(module, name)
        self.stack.append(self._call(function, tuple(self._pop_mark()), "INST"))

    def op_obj(self):
        items = self._pop_mark()
        if not items:
            raise CheckpointError(f"{self.filename}: OBJ without a class")
        self.stack.append(self._call(items[0], tuple(items[1:]), "OBJ"))

    def op_reduce(self):
        args = self._pop()
        function = self._pop()
        self.stack.append(self._call(function, args, "REDUCE"))

    def op_newobj(self):
        args = self._pop()
        cls = self._pop()
        self.stack.append(self._call(cls, args, "NEWOBJ"))

    def op_newobj_ex(self):
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        if kwargs != {}:
            raise UnsafePickleError(f"{self.filename}: NEWOBJ_EX with keyword arguments")
        self.stack.append(self._call(cls, args, "NEWOBJ_EX"))

    def op_unknown(self):
        position = self.position - 1
        raise CheckpointError(f"{self.filename}: unknown pickle opcode "
                              f"{bytes([self.data[position]])!r} at byte {position}")

    def op_ext(self):
        raise UnsafePickleError(f"{self.filename}: extension-registry opcode EXT (copyreg)")

    def op_build(self):
        state = self._pop()
        target = self._top()
        kind = type(target)
        if kind is PendingDtype:
            _build_dtype(self, target, state)
            return
        if kind is PendingArray:
            _build_array(self, target, state)
            return
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]  # (dict state, slot state) with no slots
        if kind is not collections.OrderedDict:
            raise UnsafePickleError(f"{self.filename}: BUILD on a {kind.__name__}")
        if state is None:
            return
        if not isinstance(state, dict) or not all(type(key) is str for key in state):
            raise CheckpointError(f"{self.filename}: BUILD state is not a dict of attributes")
        if any(key.startswith("__") for key in state):
            raise UnsafePickleError(f"{self.filename}: BUILD sets a dunder attribute")
        shadowing = [key for key in state if hasattr(collections.OrderedDict, key)]
        if shadowing:
            raise CheckpointError(
                f"{self.filename}: BUILD sets attribute {describe(shadowing[0], 40)}, which would "
                "hide the OrderedDict method of that name")
        # A state dict's `_metadata` is an attribute of the OrderedDict, never an item.
        vars(target).update(state)

    def op_persid(self):
        self.stack.append(self._persistent_load(self._read_line().decode("ascii")))

    def op_binpersid(self):
        self.stack.append(self._persistent_load(self._pop()))


_OPCODE_HANDLERS = {
    b"\x80": Unpickler.op_proto, b"\x95": Unpickler.op_frame, b".": Unpickler.op_stop,
    b"(": Unpickler.op_mark, b"0": Unpickler.op_pop, b"1": Unpickler.op_pop_mark,
    b"2": Unpickler.op_dup,
    b"I": Unpickler.op_int, b"J": Unpickler.op_binint, b"K": Unpickler.op_binint1,
    b"M": Unpickler.op_binint2, b"L": Unpickler.op_long, b"\x8a": Unpickler.op_long1,
    b"\x8b": Unpickler.op_long4, b"F": Unpickler.op_float, b"G": Unpickler.op_binfloat,
    b"N": Unpickler.op_none, b"\x88": Unpickler.op_newtrue, b"\x89": Unpickler.op_newfalse,
    b"S": Unpickler.op_string, b"T": Unpickler.op_binstring, b"U": Unpickler.op_short_binstring,
    b"V": Unpickler.op_unicode, b"X": Unpickler.op_binunicode,
    b"\x8c": Unpickler.op_short_binunicode, b"\x8d": Unpickler.op_binunicode8,
    b"C": Unpickler.op_short_binbytes, b"B": Unpickler.op_binbytes,
    b"\x8e": Unpickler.op_binbytes8, b"\x96": Unpickler.op_bytearray8,
    b"\x97": Unpickler.op_out_of_band, b"\x98": Unpickler.op_out_of_band,
    b")": Unpickler.op_empty_tuple, b"t": Unpickler.op_tuple, b"\x85": Unpickler.op_tuple1,
    b"\x86": Unpickler.op_tuple2, b"\x87": Unpickler.op_tuple3,
    b"]": Unpickler.op_empty_list, b"l": Unpickler.op_list, b"a": Unpickler.op_append,
    b"e": Unpickler.op_appends,
    b"}": Unpickler.op_empty_dict, b"d": Unpickler.op_dict, b"s": Unpickler.op_setitem,
    b"u": Unpickler.op_setitems,
    b"\x8f": Unpickler.op_empty_set, b"\x90": Unpickler.op_additems,
    b"\x91": Unpickler.op_frozenset,
    b"g": Unpickler.op_get, b"h": Unpickler.op_binget, b"j": Unpickler.op_long_binget,
    b"p": Unpickler.op_put, b"q": Unpickler.op_binput, b"r": Unpickler.op_long_binput,
    b"\x94": Unpickler.op_memoize,
    b"c": Unpickler.op_global, b"\x93": Unpickler.op_stack_global, b"i": Unpickler.op_inst,
    b"o": Unpickler.op_obj, b"R": Unpickler.op_reduce, b"\x81": Unpickler.op_newobj,
    b"\x92": Unpickler.op_newobj_ex, b"\x82": Unpickler.op_ext, b"\x83": Unpickler.op_ext,
    b"\x84": Unpickler.op_ext, b"b": Unpickler.op_build,
    b"P": Unpickler.op_persid, b"Q": Unpickler.op_binpersid,
}
_DISPATCH = [_OPCODE_HANDLERS.get(bytes([code]), Unpickler.op_unknown) for code in range(256)]
_RANDOMIZED_HASH_TYPES = frozenset((str, bytes))


def _too_deep(filename: str) -> CheckpointError:
    return CheckpointError(
        f"{filename}: containers nest deeper than {LIMITS.max_depth} levels "
        "(pickle_io.LIMITS.max_depth)")


def unpickle(data: Any, *, filename: str, source: Optional[TensorSource] = None,
             start: int = 0, end: Optional[int] = None) -> Tuple[Any, int]:
    """Run the pickle that starts at `data[start]`: (object, position after its STOP)."""
    return Unpickler(data, filename=filename, source=source, start=start, end=end).load()
