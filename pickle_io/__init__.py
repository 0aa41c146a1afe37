"""pickle_io: a safe, zero-copy PyTorch checkpoint reader and writer that never imports torch."""


class PickleIOError(Exception):
    """Base class of every pickle_io error."""
