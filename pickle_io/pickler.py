"""Writing the pickle of a checkpoint: protocol 2, the opcodes and globals torch itself emits.

Only what `torch.load(weights_only=True)` accepts is written: containers, scalars, strings,
bytes (as `_codecs.encode`), sets, complex numbers and tensors (`torch._utils._rebuild_tensor_v2`
over a typed storage, or `_rebuild_tensor_v3` over an untyped one for dtypes only it can carry).
The output is a pure function of the object, so saved files have stable bytes.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import struct
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np

from pickle_io import dtypes
from pickle_io.errors import PickleIOError
from pickle_io.storage_plan import PlannedStorage, PlannedTensor
from pickle_io.unpickler import MetaTensor

# Dtypes torch pickles with _rebuild_tensor_v3 and an untyped storage (torch.storage._new_dtypes).
V3_DTYPES = frozenset(dtypes.DTYPE_BY_TORCH_NAME) - frozenset(dtypes.STORAGE_CLASS_DTYPES.values())
_BATCH = 1000  # items per APPENDS/SETITEMS, as pickle does


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a while. Planning and pickling (and unpickling)
    allocate a few small objects per tensor and free them all at the end, or keep them all; with
    the collector on, a save of many tensors spends most of its time in collections that walk the
    whole heap and find nothing to free, and a load several percent of its time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def iter_arrays(obj: Any, path: str = "obj") -> List[Tuple[str, Any]]:
    """Every array (or numpy scalar, saved as a 0-d tensor) in a savable object, with its path,
    in the order the pickler meets them."""
    found: List[Tuple[str, Any]] = []
    seen = set()

    def walk(value: Any, where: str) -> None:
        if isinstance(value, (np.ndarray, np.generic)):
            found.append((where, value))
        elif isinstance(value, (dict, list, tuple, set, frozenset)):
            if id(value) in seen:
                return
            seen.add(id(value))
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(key, f"{where}[{key!r}]")
                    walk(item, f"{where}[{key!r}]")
                state = getattr(value, "__dict__", None)
                if state:
                    walk(state, f"{where}.__dict__")
            elif isinstance(value, (set, frozenset)):
                for item in sorted(value, key=repr):
                    walk(item, f"{where}{{...}}")
            else:
                for index, item in enumerate(value):
                    walk(item, f"{where}[{index}]")

    walk(obj, path)
    return found


def _memo_opcode(small: bytes, large: bytes, index: int) -> bytes:
    return small + bytes((index,)) if index < 256 else large + index.to_bytes(4, "little")


def _int_opcode(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes((value,))
    if 0 <= value < 65536:
        return b"M" + value.to_bytes(2, "little")
    if -(2**31) <= value < 2**31:
        return b"J" + value.to_bytes(4, "little", signed=True)
    encoded = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if len(encoded) >= 256:
        raise PickleIOError(f"cannot save an integer of {value.bit_length()} bits")
    return b"\x8a" + bytes((len(encoded),)) + encoded


@functools.lru_cache(maxsize=4096)  # shapes and strides repeat across a model's tensors
def _int_tuple_opcodes(values: Tuple[int, ...]) -> bytes:
    """A tuple of ints, as `Pickler.save` writes it."""
    items = b"".join(_int_opcode(value) for value in values)
    if not values:
        return b")"
    if len(values) <= 3:
        return items + b"\x85\x86\x87"[len(values) - 1:len(values)]
    return b"(" + items + b"t"


class Pickler:
    """Builds the pickle bytes of one object. `persistent_id(storage)` gives a storage's id tuple
    (as objects to pickle), and `tensors` maps id(array) to its planned layout."""

    def __init__(self, tensors: Dict[int, PlannedTensor],
                 persistent_id: Callable[[PlannedStorage], tuple]) -> None:
        self.tensors = tensors
        self.persistent_id = persistent_id
        self.out: List[bytes] = []
        self.memo: Dict[Any, int] = {}  # id(object) or ("global", module, name) -> memo index
        self._alive: List[Any] = []  # objects whose id() is in the memo
        self._savers: Dict[type, Callable[[Any], None]] = {
            type(None): self._save_none, bool: self._save_bool, int: self._save_int,
            float: self._save_float, str: self._save_str, complex: self._save_complex,
            bytes: self._save_bytes, bytearray: self._save_bytes, GlobalRef: self._save_global,
            np.ndarray: self._save_tensor, MetaTensor: self._save_meta_tensor,
            **{kind: self._save_container for kind in (
                tuple, list, dict, collections.OrderedDict, set, frozenset)},
        }

    def dump(self, obj: Any) -> bytes:
        self.out.append(b"\x80\x02")
        self.save(obj)
        self.out.append(b".")
        return b"".join(self.out)

    # -- memo --

    def _put(self, key: Any) -> None:
        index = len(self.memo)
        self.memo[key] = index
        self.out.append(_memo_opcode(b"q", b"r", index))

    def _get(self, key: Any) -> bool:
        index = self.memo.get(key)
        if index is None:
            return False
        self.out.append(_memo_opcode(b"h", b"j", index))
        return True

    def _global(self, module: str, name: str) -> None:
        key = ("global", module, name)
        if not self._get(key):
            self.out.append(b"c" + f"{module}\n{name}\n".encode("ascii"))
            self._put(key)

    # -- values --

    def save(self, obj: Any) -> None:
        saver = self._savers.get(type(obj))
        if saver is None:
            if not isinstance(obj, (np.ndarray, np.generic)):  # subclasses: np.memmap, np.float32
                raise PickleIOError(
                    f"cannot save a {type(obj).__name__}: only dict, list, tuple, set, numpy "
                    "arrays, str, bytes, int, float, complex, bool, None")
            saver = self._save_tensor
        saver(obj)

    def _save_none(self, _: None) -> None:
        self.out.append(b"N")

    def _save_meta_tensor(self, obj: MetaTensor) -> None:
        # torch._utils._rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad), as torch writes it
        self._global("torch._utils", "_rebuild_meta_tensor_no_storage")
        self.out.append(b"(")
        self._global("torch", dtypes.torch_name(obj.dtype))
        self.save(tuple(obj.shape))
        self.save(tuple(obj.stride))
        self.out.append(b"\x89tR")  # requires_grad False

    def _save_bool(self, value: bool) -> None:
        self.out.append(b"\x88" if value else b"\x89")

    def _save_int(self, value: int) -> None:
        self.out.append(_int_opcode(value))

    def _save_float(self, value: float) -> None:
        self.out.append(b"G" + struct.pack(">d", value))

    def _save_str(self, value: str) -> None:
        encoded = value.encode("utf-8", "surrogatepass")
        self.out.append(b"X" + len(encoded).to_bytes(4, "little") + encoded)

    def _save_complex(self, value: complex) -> None:
        self._global("builtins", "complex")
        self.save((value.real, value.imag))
        self.out.append(b"R")

    def _save_global(self, ref: "GlobalRef") -> None:
        self._global(ref.module, ref.name)

    def _save_bytes(self, value: Any) -> None:
        if type(value) is bytearray:
            self._global("builtins", "bytearray")
            self._save_bytes(bytes(value))
            self.out.append(b"\x85R")
            return
        # Protocol 2 has no bytes opcode; pickle writes _codecs.encode(latin-1 text, "latin1").
        self._global("_codecs", "encode")
        self.save((value.decode("latin1"), "latin1"))
        self.out.append(b"R")

    def _save_container(self, obj: Any) -> None:
        if self._get(id(obj)):
            return
        kind = type(obj)
        if kind is tuple:
            self._save_tuple(obj)
            return  # tuples are memoized after their items, as pickle does
        if kind in (set, frozenset):
            self._global("builtins", kind.__name__)
            self._save_tuple((sorted(obj, key=repr),))  # sorted: stable bytes
            self.out.append(b"R")
            self._remember(obj)
            return
        if kind is list:
            self.out.append(b"]")
            self._remember(obj)
            self._save_batches(obj, b"e")
            return
        if kind is collections.OrderedDict:
            self._global("collections", "OrderedDict")
            self.out.append(b")R")
        else:
            self.out.append(b"}")
        self._remember(obj)
        self._save_batches(obj, b"u")
        state = getattr(obj, "__dict__", None)
        if state:  # a state dict's _metadata: restored as an attribute by BUILD
            self.save(dict(state))
            self.out.append(b"b")

    def _save_batches(self, container: Any, opcode: bytes) -> None:
        """A list's items (APPENDS) or a dict's pairs (SETITEMS), _BATCH at a time."""
        save, out = self.save, self.out
        items = list(container.items()) if opcode == b"u" else container
        for start in range(0, len(items), _BATCH):
            out.append(b"(")
            if opcode == b"u":
                for key, value in items[start:start + _BATCH]:
                    save(key)
                    save(value)
            else:
                for item in items[start:start + _BATCH]:
                    save(item)
            out.append(opcode)

    def _save_tuple(self, items: tuple) -> None:
        if not items:
            self.out.append(b")")
            return
        if len(items) <= 3:
            for item in items:
                self.save(item)
            self.out.append(b"\x85\x86\x87"[len(items) - 1:len(items)])
        else:
            self.out.append(b"(")
            for item in items:
                self.save(item)
            self.out.append(b"t")

    def _remember(self, obj: Any) -> None:
        self._alive.append(obj)
        self._put(id(obj))

    def _save_tensor(self, array: Any) -> None:
        if self._get(id(array)):
            return
        layout = self.tensors[id(array)]
        dtype_name = layout.storage.dtype_name
        v3 = dtype_name in V3_DTYPES
        out = self.out
        self._global("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        out.append(b"(")
        self._save_tuple(self.persistent_id(layout.storage))
        out.append(b"Q")
        out.append(_int_opcode(layout.offset))
        out.append(_int_tuple_opcodes(layout.shape))
        out.append(_int_tuple_opcodes(layout.stride))
        out.append(b"\x89")  # requires_grad False
        self._global("collections", "OrderedDict")  # empty backward hooks
        out.append(b")R")
        if v3:
            self._global("torch", dtype_name)
        out.append(b"tR")
        self._remember(array)


class GlobalRef:
    """A global to write inside a persistent id (the storage class)."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name


def storage_class(storage: PlannedStorage) -> Tuple[str, str]:
    """The (module, name) of the storage class torch names for a storage of this dtype."""
    if storage.dtype_name in V3_DTYPES:
        return "torch.storage", "UntypedStorage"
    return "torch", dtypes.STORAGE_CLASS_BY_TORCH_NAME[storage.dtype_name]
