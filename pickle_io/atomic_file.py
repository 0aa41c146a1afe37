"""Atomic file creation: write a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union


@contextlib.contextmanager
def replacing(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success it replaces `path`, on any
    error it is removed, so no half-written file is ever visible under `path`."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        # Writers that go through a temporary of their own (the safetensors library) leave 0600:
        # every file we write gets the mode a plain open() gives, whoever wrote the bytes.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


IOV_MAX = 1024  # buffers per writev call (Linux's UIO_MAXIOV; POSIX guarantees 16 or more)


def writev_all(fd: int, buffers: Sequence[Any]) -> None:
    """Write `buffers` (bytes or 1-D byte memoryviews) in order with as few os.writev calls as
    the kernel allows (IOV_MAX buffers each; a large write may also stop part way)."""
    start = 0
    head: Optional[memoryview] = None  # the unwritten rest of buffers[start], after a short write
    while start < len(buffers):
        batch = list(buffers[start:start + IOV_MAX])
        if head is not None:
            batch[0] = head
        written = os.writev(fd, batch)
        head = None
        for buffer in batch:
            if written < len(buffer):
                head = memoryview(buffer)[written:]
                break
            written -= len(buffer)
            start += 1


@functools.lru_cache(maxsize=None)  # looked up on first use, so importing costs nothing
def _libc_fallocate() -> Optional[Callable[..., int]]:
    """libc's fallocate(2) wrapper (Linux only), found among the symbols Python already loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


def preallocate(fd: int, size: int) -> bool:
    """Reserve `size` bytes of disk for the empty file `fd` before writing it, where the file
    system can (Linux fallocate(2)); whether it did.

    Writing into reserved blocks skips the per-page delayed-allocation work: on ext4 a large
    file is written in about two thirds of the time. glibc's posix_fallocate is not used
    because where the file system lacks fallocate it emulates it by writing every block."""
    fallocate = _libc_fallocate()
    if fallocate is None or size <= 0:
        return False
    return fallocate(fd, 0, 0, size) == 0


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (os.umask can only swap)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: swap and restore
    os.umask(mask)
    return mask
