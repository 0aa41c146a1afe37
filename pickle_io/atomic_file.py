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
