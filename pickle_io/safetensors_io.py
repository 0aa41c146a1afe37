"""safetensors files, through the `safetensors` package's numpy API.

The package validates every file first (header, offsets, sizes). Its numpy reader copies each
tensor, and looks float8 dtypes up as `numpy.<name>`, which numpy does not have; so mapped loads,
and float8 tensors, slice the bytes themselves at the offsets of the header the package accepted.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Mapping, Tuple

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, which the package's reader needs)
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from pickle_io import dtypes
from pickle_io.atomic_file import replacing
from pickle_io.errors import CheckpointError, PickleIOError
from pickle_io.torch_zip import map_file

# safetensors dtype code -> torch/numpy dtype name
DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
    "C64": "complex64", "C128": "complex128",
    "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn", "F8_E8M0": "float8_e8m0fnu",
}
_HEADER_LIMIT = 100_000_000  # the package's own limit on the JSON header


def looks_like_safetensors(head: bytes, file_size: int) -> bool:
    """Whether a file starts like safetensors: a u64 header length, then a JSON object."""
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    return header_length <= min(file_size - 8, _HEADER_LIMIT) and head[8:9] == b"{"


def tensor_table(path: os.PathLike) -> List[Tuple[str, np.dtype, Tuple[int, ...]]]:
    """(name, dtype, shape) of every tensor, in file order, reading no tensor data."""
    try:
        with safe_open(str(path), framework="numpy") as file:
            table = []
            for name in file.keys():
                view = file.get_slice(name)
                dtype = _numpy_dtype(path, name, view.get_dtype())
                table.append((name, dtype, tuple(view.get_shape())))
            return table
    except SafetensorError as error:
        raise CheckpointError(f"{path}: bad safetensors file: {error}") from None


def read_safetensors(path: os.PathLike, *, mmap: bool = False,
                     writable: bool = False) -> Dict[str, np.ndarray]:
    """Every tensor of a safetensors file: views of the mapped file (mmap=True; read-only, or
    copy-on-write when writable) or owned arrays from the package's numpy API (mmap=False)."""
    try:
        with safe_open(str(path), framework="numpy") as file:  # validates the whole header
            names = list(file.keys())
            codes = {name: file.get_slice(name).get_dtype() for name in names}
            if mmap:
                return _mapped_tensors(path, names, codes, writable)
            float8 = {name for name in names if codes[name].startswith("F8_")}
            header, data_start = _header(path) if float8 else ({}, 0)  # once, not per tensor
            return {name: _copy_raw(path, name, codes[name], header, data_start) if name in float8
                    else file.get_tensor(name) for name in names}
    except SafetensorError as error:
        raise CheckpointError(f"{path}: bad safetensors file: {error}") from None


def _header(path: os.PathLike) -> Tuple[Dict[str, Any], int]:
    """The JSON header (already validated by the package) and where the data buffer starts."""
    with open(path, "rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        return json.loads(file.read(header_length)), 8 + header_length


def _mapped_tensors(path: os.PathLike, names: List[str], codes: Dict[str, str],
                    writable: bool) -> Dict[str, np.ndarray]:
    header, data_start = _header(path)
    with open(path, "rb") as file:
        mapped = map_file(file, writable=writable) if os.fstat(
            file.fileno()).st_size > data_start else bytearray() if writable else b""
    tensors = {}
    for name in names:
        dtype = _numpy_dtype(path, name, codes[name])
        begin, end = header[name]["data_offsets"]
        shape = tuple(header[name]["shape"])
        if end - begin != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{path}: tensor {name} has {end - begin} bytes for shape {shape}")
        if end == begin:
            tensors[name] = np.empty(shape, dtype)
            continue
        tensors[name] = np.frombuffer(mapped, dtype, count=(end - begin) // dtype.itemsize,
                                      offset=data_start + begin).reshape(shape)
    return tensors


def _numpy_dtype(path: os.PathLike, name: str, code: str) -> np.dtype:
    dtype = dtypes.numpy_dtype(DTYPE_NAMES.get(code, ""))
    if dtype is None:
        raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {code}")
    return dtype


def _copy_raw(path: os.PathLike, name: str, code: str, header: Dict[str, Any],
              data_start: int) -> np.ndarray:
    dtype = _numpy_dtype(path, name, code)
    begin, end = header[name]["data_offsets"]
    with open(path, "rb") as file:
        file.seek(data_start + begin)
        data = bytearray(file.read(end - begin))
    return np.frombuffer(data, dtype).reshape(header[name]["shape"])


def write_safetensors(tensors: Mapping[str, np.ndarray], path: os.PathLike) -> None:
    """Write a flat {name: array} mapping with `{"format": "pt"}` metadata, atomically."""
    contiguous = {}
    for name, array in tensors.items():
        if not isinstance(name, str) or not isinstance(array, np.ndarray):
            raise PickleIOError(f"{path}: safetensors holds only {{str: array}}; {name!r} is not")
        if dtypes.torch_name(array.dtype.newbyteorder("=")) is None:
            raise PickleIOError(f"{path}: tensor {name} has dtype {array.dtype}")
        contiguous[name] = np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C")
    with replacing(path) as temporary:
        save_file(contiguous, str(temporary), metadata={"format": "pt"})
