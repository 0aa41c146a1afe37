"""Atomic file creation: write a temporary file beside the target, then rename it into place."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator, Union


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


def write_all(fd: int, data: memoryview) -> None:
    """os.write until every byte of `data` is written (large writes may be partial)."""
    view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    while len(view):
        view = view[os.write(fd, view):]


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
