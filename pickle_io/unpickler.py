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
import struct
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from pickle_io import dtypes
from pickle_io.errors import CheckpointError, PickleIOError, UnsafePickleError

HIGHEST_PROTOCOL = 5
_U32 = struct.Struct("<I")


# ----- what the allowlisted globals resolve to -----------------------------------------------


@dataclass(frozen=True)
class StorageClass:
    """`torch.FloatStorage` and friends; dtype_name None means `torch.UntypedStorage` (bytes)."""

    qualified_name: str
    dtype_name: Optional[str]


@dataclass(frozen=True)
class TorchDtype:
    """A dtype global such as `torch.float8_e4m3fn` (the last argument of `_rebuild_tensor_v3`)."""

    name: str


@dataclass(frozen=True)
class TensorClass:
    """`torch.Tensor` or `torch.nn.Parameter`, named by `_rebuild_from_type_v2`; never called."""

    qualified_name: str


@dataclass(frozen=True)
class AllowedCallable:
    """An allowlisted global that REDUCE/NEWOBJ/INST/OBJ may call: runs our function, not torch's."""

    qualified_name: str
    function: Callable[..., Any]  # function(vm, *args)

    def __call__(self, vm: "Unpickler", args: tuple) -> Any:
        return self.function(vm, *args)


@dataclass(frozen=True)
class StorageRef:
    """A validated persistent id `('storage', type, key, location, numel[, view_metadata])`."""

    key: str
    dtype_name: Optional[str]  # None: untyped storage, numel counts bytes
    location: str
    numel: int
    view: Optional[Tuple[str, int, int]]  # legacy storage view: (view key, offset, numel)


class TensorSource(Protocol):
    """What the machine asks for when the pickle names a storage or rebuilds a tensor."""

    def storage(self, ref: StorageRef) -> Any:
        ...

    def tensor(
        self, storage: Any, dtype_name: Optional[str], offset: int, shape: tuple, stride: tuple
    ) -> Any:
        ...


# ----- the allowlisted functions -------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return type(value) is int


def _int_tuple(value: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(value, tuple) or not all(_is_int(item) for item in value):
        raise CheckpointError(f"{what} must be a tuple of ints, got {value!r:.80}")
    return value


def _rebuild_tensor(vm: "Unpickler", storage, offset, size, stride, dtype_name=None):
    if not _is_int(offset):
        raise CheckpointError(f"tensor storage offset must be an int, got {offset!r:.80}")
    size = _int_tuple(size, "tensor size")
    stride = _int_tuple(stride, "tensor stride")
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {size} and stride {stride} differ in length")
    if offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"negative tensor offset/size/stride: {offset}, {size}, {stride}")
    return vm.source.tensor(storage, dtype_name, offset, size, stride)


def _rebuild_tensor_v1(vm, storage, offset, size, stride):
    return _rebuild_tensor(vm, storage, offset, tuple(size), tuple(stride))


def _rebuild_tensor_v2(vm, storage, offset, size, stride, requires_grad, hooks, metadata=None):
    return _rebuild_tensor(vm, storage, offset, size, stride)


def _rebuild_tensor_v3(
    vm, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None
):
    if not isinstance(dtype, TorchDtype):
        raise CheckpointError(f"_rebuild_tensor_v3 expects a torch dtype, got {dtype!r:.80}")
    return _rebuild_tensor(vm, storage, offset, size, stride, dtype.name)


def _rebuild_parameter(vm, data, requires_grad, hooks, state=None):
    return data  # a Parameter is its data; requires_grad and hooks have no numpy meaning


def _rebuild_from_type_v2(vm, function, new_type, args, state):
    if not isinstance(function, AllowedCallable) or not isinstance(args, tuple):
        raise UnsafePickleError(f"_rebuild_from_type_v2 with callable {function!r:.80}")
    if not isinstance(new_type, TensorClass):
        raise UnsafePickleError(f"_rebuild_from_type_v2 to type {new_type!r:.80}")
    return function(vm, args)


def _ordered_dict(vm, items=()):
    if items:
        raise UnsafePickleError("OrderedDict called with arguments")
    return collections.OrderedDict()


def _torch_size(vm, dims=()):
    return _int_tuple(tuple(dims), "torch.Size")


def _torch_device(vm, kind, index=None):
    if not isinstance(kind, str) or not (index is None or _is_int(index)):
        raise CheckpointError(f"bad torch.device arguments {kind!r:.40}, {index!r:.40}")
    return kind if index is None else f"{kind}:{index}"


def _codecs_encode(vm, text, encoding="latin1"):
    # Protocol 2 pickles bytes as _codecs.encode(<latin-1 str>, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r:.40}")
    return text.encode("latin1")


def _builtin_set(vm, items=()):
    return set(items)


def _builtin_frozenset(vm, items=()):
    return frozenset(items)


def _builtin_complex(vm, real=0.0, imag=0.0):
    if not all(isinstance(part, (int, float)) for part in (real, imag)):
        raise CheckpointError(f"complex() of {real!r:.40}, {imag!r:.40}")
    return complex(real, imag)


def _builtin_bytes(vm, data=b""):
    # Protocol 2 pickles b"" as bytes() (other bytes go through _codecs.encode).
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"bytes() of {type(data).__name__}")
    return bytes(data)


def _builtin_bytearray(vm, data=b""):
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"bytearray() of {type(data).__name__}")
    return bytearray(data)


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
    ):
        allow_callable("torch._utils", name, function)
    allow_callable("torch._tensor", "_rebuild_from_type_v2", _rebuild_from_type_v2)
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
    for module in ("torch", "torch.storage"):
        allowed[(module, "UntypedStorage")] = StorageClass(f"{module}.UntypedStorage", None)
    for name in list(dtypes.DTYPE_BY_TORCH_NAME) + list(dtypes.TORCH_DTYPE_ALIASES):
        allowed[("torch", name)] = TorchDtype(dtypes.TORCH_DTYPE_ALIASES.get(name, name))
    return allowed


ALLOWED_GLOBALS: Dict[Tuple[str, str], Any] = _build_allowlist()


def resolve_global(module: str, name: str, filename: str) -> Any:
    """The marker or function for an allowlisted global; UnsafePickleError for anything else."""
    try:
        return ALLOWED_GLOBALS[(module, name)]
    except (KeyError, TypeError):
        pass
    if module in ("torch", "torch.cuda") and name in dtypes.UNSUPPORTED_STORAGE_CLASSES:
        raise CheckpointError(f"{filename}: quantized storage torch.{name} is not supported")
    raise UnsafePickleError(f"{filename}: forbidden global {module}.{name}")


def parse_storage_id(pid: Any, filename: str) -> StorageRef:
    """Validate a persistent id naming a storage."""
    if not isinstance(pid, tuple) or len(pid) not in (5, 6):
        raise CheckpointError(f"{filename}: unsupported persistent id {pid!r:.120}")
    typename, storage_class, key, location, numel = pid[:5]
    view = pid[5] if len(pid) == 6 else None
    if isinstance(typename, bytes):
        typename = typename.decode("ascii", "replace")
    if typename != "storage":
        raise CheckpointError(f"{filename}: unsupported persistent id of type {typename!r:.40}")
    if not isinstance(storage_class, StorageClass):
        raise CheckpointError(f"{filename}: storage type is {storage_class!r:.80}")
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key or not key.replace("_", "").isalnum() or not key.isascii():
        raise CheckpointError(f"{filename}: bad storage key {key!r:.80}")
    if isinstance(location, bytes):
        location = location.decode("ascii", "replace")
    if not isinstance(location, str) or not _is_int(numel) or numel < 0:
        raise CheckpointError(f"{filename}: bad storage location/size {location!r:.40}, {numel!r:.40}")
    if view is not None:
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                and _is_int(view[1]) and _is_int(view[2]) and view[1] >= 0 and view[2] >= 0):
            raise CheckpointError(f"{filename}: bad storage view {view!r:.80}")
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
        if self.position >= self.end:
            raise TruncatedPickle(f"{self.filename}: truncated pickle at byte {self.position}")
        self.position += 1
        return self.data[self.position - 1]

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
        if self.position + 4 > self.end:
            raise TruncatedPickle(f"{self.filename}: truncated pickle at byte {self.position}")
        (value,) = _U32.unpack_from(self.data, self.position)
        self.position += 4
        return value

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
        top = self.stack.pop() if self.stack else _MARK
        if top is _MARK:
            raise CheckpointError(f"{self.filename}: pickle stack underflow")
        return top

    def _top(self) -> Any:
        top = self.stack[-1] if self.stack else _MARK
        if top is _MARK:
            raise CheckpointError(f"{self.filename}: pickle stack underflow")
        return top

    def load(self) -> Tuple[Any, int]:
        dispatch, data, end = _DISPATCH, self.data, self.end
        opcode_position = self.position
        try:
            while True:
                opcode_position = self.position
                if opcode_position >= end:
                    raise TruncatedPickle(f"{self.filename}: truncated pickle (no STOP)")
                code = data[opcode_position]
                self.position = opcode_position + 1
                handler = dispatch.get(code)
                if handler is None:
                    raise CheckpointError(
                        f"{self.filename}: unknown pickle opcode {bytes([code])!r} at byte "
                        f"{opcode_position}")
                handler(self)
        except _Stop as stop:
            return stop.value, self.position
        except PickleIOError:
            raise
        except RecursionError:
            raise CheckpointError(f"{self.filename}: pickle nests too deeply") from None
        except Exception as error:  # a malformed stream (bad types, unhashable keys...)
            raise CheckpointError(
                f"{self.filename}: malformed pickle at byte {opcode_position}: "
                f"{type(error).__name__}: {error}") from None

    # -- calling allowlisted globals --

    def _call(self, function: Any, args: Any, opcode: str) -> Any:
        if not isinstance(function, AllowedCallable):
            raise UnsafePickleError(f"{self.filename}: {opcode} applied to {function!r:.80}")
        if not isinstance(args, tuple):
            raise CheckpointError(f"{self.filename}: {opcode} arguments are not a tuple")
        return function.function(self, *args)

    def _global(self, module: Any, name: Any) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CheckpointError(f"{self.filename}: global names must be strings")
        return resolve_global(module, name, self.filename)

    def _persistent_load(self, pid: Any) -> Any:
        if self.source is None:
            raise UnsafePickleError(f"{self.filename}: persistent id in a pickle that allows none")
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
    def op_string(self):
        line = self._read_line().rstrip(b"\r")
        if len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b"'", b'"'):
            raise CheckpointError(f"{self.filename}: STRING argument is not quoted")
        self.stack.append(codecs.escape_decode(line[1:-1])[0].decode("latin1"))

    def op_binstring(self):
        length = int.from_bytes(self._read(4), "little", signed=True)
        if length < 0:
            raise CheckpointError(f"{self.filename}: negative BINSTRING length")
        self.stack.append(self._read(length).decode("latin1"))

    def op_short_binstring(self):
        self.stack.append(self._read(self._read_byte()).decode("latin1"))

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
        self.stack.append(self._pairs_into({}, items))

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
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]
        return target

    def op_empty_set(self):
        self.stack.append(set())

    def op_additems(self):
        items = self._pop_mark()
        target = self._top()
        if not isinstance(target, set):
            raise CheckpointError(f"{self.filename}: ADDITEMS on a {type(target).__name__}")
        target.update(items)

    def op_frozenset(self):
        self.stack.append(frozenset(self._pop_mark()))

    # memo
    def _get(self, index: int) -> None:
        try:
            self.stack.append(self.memo[index])
        except KeyError:
            raise CheckpointError(f"{self.filename}: pickle memo has no entry {index}") from None

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

    def op_ext(self):
        raise UnsafePickleError(f"{self.filename}: extension-registry opcode EXT (copyreg)")

    def op_build(self):
        state = self._pop()
        target = self._top()
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]  # (dict state, slot state) with no slots
        if not isinstance(target, collections.OrderedDict):
            raise UnsafePickleError(f"{self.filename}: BUILD on a {type(target).__name__}")
        if state is None:
            return
        if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
            raise CheckpointError(f"{self.filename}: BUILD state is not a dict of attributes")
        if any(key.startswith("__") for key in state):
            raise UnsafePickleError(f"{self.filename}: BUILD sets a dunder attribute")
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
_DISPATCH = {code[0]: handler for code, handler in _OPCODE_HANDLERS.items()}


def unpickle(data: Any, *, filename: str, source: Optional[TensorSource] = None,
             start: int = 0, end: Optional[int] = None) -> Tuple[Any, int]:
    """Run the pickle that starts at `data[start]`: (object, position after its STOP)."""
    return Unpickler(data, filename=filename, source=source, start=start, end=end).load()
