"""`Artifacts.toml`: the table binding artifact names to git tree hashes, shared with Julia.

Each entry is a Julia-Artifacts table: the required `git-tree-sha1` plus our own keys (repo,
revision, commit, file, sha256, etag, size, source), which Julia keeps and ignores. Readers never
lock: the file is only ever replaced whole (temp file + `os.replace`), so a reader sees the old
table or the new one. Writers serialise through a `filelock` lock next to it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib
from filelock import FileLock

from bridge.errors import BridgeError

Table = Dict[str, Dict[str, Any]]


class ManifestError(BridgeError):
    """Artifacts.toml exists but is not valid TOML or not a table of artifact tables."""


class Manifest:
    """Read and update one `Artifacts.toml`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = FileLock(str(self.lock_path))  # one instance: re-entrant within this process

    def read(self) -> Table:
        """The whole table ({} when the file does not exist yet)."""
        try:
            with open(self.path, "rb") as file:
                table = tomllib.load(file)
        except FileNotFoundError:
            return {}
        except tomllib.TOMLDecodeError as error:
            raise ManifestError(f"{self.path} is not valid TOML: {error}") from None
        for name, entry in table.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("git-tree-sha1"), str):
                raise ManifestError(f"{self.path}: entry {name!r} has no git-tree-sha1 string")
        return table

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' lock (other processes wait; readers are never blocked). Re-entrant."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            yield

    def update(self, change: Callable[[Table], None]) -> Table:
        """Apply `change` to the current table in place and write the result atomically, under the lock."""
        with self.locked():
            table = self.read()
            change(table)
            self._write(table)
            return table

    def _write(self, table: Table) -> None:
        from pickle_io.atomic_file import replacing  # here: lookups only read the table

        with replacing(self.path) as temporary, open(temporary, "wb") as file:
            tomli_w.dump(dict(sorted(table.items())), file)
            file.flush()
            os.fsync(file.fileno())
