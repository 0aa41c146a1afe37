"""The errors pickle_io raises. Everything it raises on bad input is a PickleIOError."""

from __future__ import annotations


class PickleIOError(Exception):
    """Base class of every pickle_io error."""


class UnsafePickleError(PickleIOError):
    """The pickle asks for something outside the allowlist (a global, an opcode, an extension)."""


class CheckpointError(PickleIOError):
    """The file is not a checkpoint we can read, or it is malformed or truncated."""
