"""Names torch uses for element types, and the numpy dtypes we represent them with.

torch names a dtype twice in a checkpoint: through a typed storage class (`torch.FloatStorage`,
used by `_rebuild_tensor_v2` and the legacy format) or through a dtype global (`torch.float8_e4m3fn`,
used by `_rebuild_tensor_v3` with an untyped storage). bfloat16 and float8 have no numpy type of
their own; `ml_dtypes` provides real numpy dtypes for them.
"""

from __future__ import annotations

import functools
from typing import Dict, Optional

import ml_dtypes
import numpy as np

# torch dtype attribute name (torch.<name>) -> numpy dtype.
DTYPE_BY_TORCH_NAME: Dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e8m0fnu": np.dtype(ml_dtypes.float8_e8m0fnu),
}

# Aliases torch also exposes as module attributes (torch.float is torch.float32, ...).
TORCH_DTYPE_ALIASES: Dict[str, str] = {
    "double": "float64",
    "float": "float32",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}

# Typed storage class (torch.<name>) -> torch dtype name. These are the dtypes the legacy
# format and `_rebuild_tensor_v2` can carry.
STORAGE_CLASS_DTYPES: Dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}

# Storage classes torch knows but whose contents we cannot represent as plain numpy arrays.
UNSUPPORTED_STORAGE_CLASSES = (
    "QInt8Storage",
    "QUInt8Storage",
    "QInt32Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
)

# torch dtype globals torch.load(weights_only=True) accepts that numpy has no type for: tensors
# of these are refused with an UnsupportedTensorError naming them.
UNSUPPORTED_TORCH_DTYPES = (
    "complex32", "chalf", "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
    "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16", "float4_e2m1fn_x2",
    *(f"int{bits}" for bits in range(1, 8)), *(f"uint{bits}" for bits in range(1, 8)),
)

UNTYPED_STORAGE_CLASS = "UntypedStorage"

# numpy's dtype names match torch's (float32, int64, bool, bfloat16, float8_e4m3fn, ...).
STORAGE_CLASS_BY_TORCH_NAME: Dict[str, str] = {
    dtype_name: storage_class for storage_class, dtype_name in STORAGE_CLASS_DTYPES.items()
}


def numpy_dtype(torch_name: str) -> Optional[np.dtype]:
    """The numpy dtype of `torch.<torch_name>`, or None when it has none."""
    torch_name = TORCH_DTYPE_ALIASES.get(torch_name, torch_name)
    return DTYPE_BY_TORCH_NAME.get(torch_name)


@functools.lru_cache(maxsize=None)  # numpy computes dtype.name in Python, slowly
def torch_name(dtype: np.dtype) -> Optional[str]:
    """The torch dtype name of a numpy dtype, or None when torch has none (or it is byte-swapped)."""
    dtype = np.dtype(dtype)
    if dtype.name in DTYPE_BY_TORCH_NAME and (dtype.isnative or dtype.itemsize == 1):
        return dtype.name
    return None
