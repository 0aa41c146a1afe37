"""Content hashes: git object hashes exactly as git (and Julia's `Pkg.GitTools.tree_hash`) computes
them, and the one-pass sha256 + git blob sha1 of a file's bytes that registration checks.

An artifact's name on disk is the git tree hash of its directory, so Julia's `Artifacts` stdlib and
`git mktree` agree with us byte for byte. Our artifacts hold one regular file each, but
`tree_hash_of_directory` walks any directory so `verify()` can re-hash whatever is actually there.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Optional, Tuple, Union

# git's file modes, as written in tree entries.
MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_DIRECTORY = "40000"

READ_CHUNK = 8 * 1024 * 1024
_SHA1_HEX = re.compile(r"[0-9a-f]{40}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha1_hex(value: object) -> bool:
    """Whether `value` is a git object hash as git writes it: 40 lowercase hex digits."""
    return isinstance(value, str) and _SHA1_HEX.fullmatch(value) is not None


def is_sha256_hex(value: object) -> bool:
    """Whether `value` is a sha256 as the Hub and the store write it: 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def blob_header(size: int) -> bytes:
    """The prefix git hashes before a blob's bytes: `b"blob <size>\\0"`."""
    return b"blob %d\x00" % size


def git_blob_sha1(data: bytes) -> str:
    """`git hash-object` of `data`."""
    return hashlib.sha1(blob_header(len(data)) + data).hexdigest()


def git_blob_sha1_of_file(path: Union[str, os.PathLike]) -> str:
    """`git hash-object PATH`, reading the file in chunks."""
    digest = hashlib.sha1(blob_header(os.path.getsize(path)))
    with open(path, "rb") as file:
        while chunk := file.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_hash(entries: Iterable[Tuple[str, str, str]]) -> str:
    """The git tree hash of `(mode, name, hex sha1)` entries (what `git mktree` prints).

    git sorts entries by name, comparing a directory's name as if it ended in "/".
    """

    def sort_key(entry: Tuple[str, str, str]) -> bytes:
        mode, name, _ = entry
        return name.encode() + (b"/" if mode == MODE_DIRECTORY else b"")

    body = b"".join(
        mode.encode() + b" " + name.encode() + b"\x00" + bytes.fromhex(sha1)
        for mode, name, sha1 in sorted(entries, key=sort_key)
    )
    return hashlib.sha1(b"tree %d\x00" % len(body) + body).hexdigest()


def single_file_tree_hash(filename: str, blob_sha1: str, executable: bool = False) -> str:
    """The tree hash of a directory holding one file, from the file's git blob sha1."""
    return tree_hash([(MODE_EXECUTABLE if executable else MODE_FILE, filename, blob_sha1)])


def tree_hash_of_directory(directory: Union[str, os.PathLike]) -> str:
    """The git tree hash of `directory`'s contents; empty subdirectories are skipped, as git does."""
    entries = []
    for entry in os.scandir(directory):
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(entry.path).encode()
            entries.append((MODE_SYMLINK, entry.name, git_blob_sha1(target)))
        elif stat.S_ISDIR(mode):
            if _has_files(Path(entry.path)):
                entries.append((MODE_DIRECTORY, entry.name, tree_hash_of_directory(entry.path)))
        else:
            executable = bool(mode & stat.S_IXUSR)
            entries.append(
                (MODE_EXECUTABLE if executable else MODE_FILE, entry.name, git_blob_sha1_of_file(entry.path))
            )
    return tree_hash(entries)


def _has_files(directory: Path) -> bool:
    return any(not path.is_dir() or path.is_symlink() for path in directory.rglob("*"))


@dataclass(frozen=True)
class ContentHashes:
    """What we know of a file's bytes: the Hub names LFS files by sha256, others by git blob sha1."""

    sha256: str
    git_sha1: str
    size: int


class ContentHasher:
    """sha256 and git blob sha1 of a stream of known size, fed chunk by chunk.

    hashlib releases the GIL on large updates, so the two digests run on two cores.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.seen = 0
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(blob_header(size))
        self._pool = ThreadPoolExecutor(max_workers=1)

    def update(self, chunk: Union[bytes, memoryview]) -> None:
        pending = self._pool.submit(self._sha256.update, chunk)
        self._sha1.update(chunk)
        pending.result()
        self.seen += len(chunk)

    def finish(self) -> ContentHashes:
        self._pool.shutdown()
        if self.seen != self.size:
            raise ValueError(f"expected {self.size} bytes, read {self.seen}")
        return ContentHashes(sha256=self._sha256.hexdigest(), git_sha1=self._sha1.hexdigest(), size=self.size)


def hash_file(path: Union[str, os.PathLike], copy_to: Optional[BinaryIO] = None) -> ContentHashes:
    """Hash the file at `path` in one read, writing its bytes to `copy_to` on the way if given."""
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        hasher = ContentHasher(size)
        if copy_to is None and size > 0:
            # Hash straight from the page cache: no copy of the bytes into Python objects.
            with mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                for offset in range(0, size, READ_CHUNK):
                    hasher.update(view[offset : offset + READ_CHUNK])
                view.release()
            return hasher.finish()
        while chunk := source.read(READ_CHUNK):
            hasher.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
    return hasher.finish()
