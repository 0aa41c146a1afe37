"""The errors pickle_io raises. Everything it raises on bad input is a PickleIOError."""

from __future__ import annotations


class PickleIOError(Exception):
    """Base class of every pickle_io error."""


class UnsafePickleError(PickleIOError):
    """The pickle asks for something outside the allowlist (a global, an opcode, an extension)."""


class CheckpointError(PickleIOError):
    """The file is not a checkpoint we can read, or it is malformed or truncated."""


class UnsupportedTensorError(CheckpointError):
    """A harmless tensor of a kind numpy cannot hold (sparse, quantized, nested, complex32, ...)."""


def describe(value: object, limit: int = 80) -> str:
    """A short repr of an untrusted value for an error message (never raises: a 5,000-digit int
    or a broken __repr__ gives its type name)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001  (int-to-str limit, recursion, ...)
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."
