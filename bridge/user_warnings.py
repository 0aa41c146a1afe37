"""Warnings that point at the user's line, however deep inside hgf-bridge they are raised.

A fixed `stacklevel` is right for one call path only: `hgf(...)`, `Model.from_pretrained(...)` and
`Model.from_state_dict(...)` reach the same warning at different depths. `warn_user` skips every
frame of this package (and torch's `nn.Module.__call__`, between a user and a model's forward).
"""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_TORCH_MODULE_CALL = os.path.join("torch", "nn", "modules") + os.sep


def _is_internal(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) or _TORCH_MODULE_CALL in filename


def warn_user(message: str, category: type = UserWarning) -> None:
    """`warnings.warn(message, category)` attributed to the first caller outside hgf-bridge."""
    frame = sys._getframe(1)
    level = 2  # 1 would be this function; 2 is its caller
    while frame.f_back is not None and _is_internal(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
