"""`Artifacts.toml`: the table binding artifact names to git tree hashes, shared with Julia.

Each entry is a Julia-Artifacts table: the required `git-tree-sha1` plus our own keys (repo,
revision, commit, file, sha256, etag, size, source), which Julia keeps and ignores. Readers never
lock: the file is only ever replaced whole (temp file + `os.replace`), so a reader sees the old
table or the new one. Writers serialise through a `filelock` lock next to it.

Damage is detected, never propagated. The file we write opens with a header comment and ends with
an integrity trailer, a comment holding the entry count and the sha256 of everything before it
(Julia's TOML parser skips both). A file with our header whose trailer is missing or does not match
was truncated or changed behind our back: reading it raises ManifestDamagedError, so no write and
no gc ever builds on a table that silently lost names. Each write keeps the table it replaces as
`Artifacts.toml.previous`, the way back. A file without our header (written by hand or by Julia)
(no header, no trailer) is read as it is, but every entry is still checked before any of its
values becomes a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib
from filelock import FileLock

from bridge.artifacts.errors import InvalidNameError
from bridge.artifacts.hashes import is_sha1_hex, is_sha256_hex
from bridge.artifacts.names import artifact_filename, canonical_name
from bridge.errors import BridgeError

Table = Dict[str, Dict[str, Any]]

HEADER = b"# Written by hgf-bridge. The last line checks the lines above it: edit with `hgf artifacts`.\n"
TRAILER = re.compile(rb"# hgf-bridge integrity: entries=(\d+) sha256=([0-9a-f]{64})\n\Z")
MAX_MANIFEST_BYTES = 64 * 2**20  # some 200,000 entries; a larger file is not one we wrote


class ManifestError(BridgeError):
    """Artifacts.toml exists but is not valid TOML or not a table of artifact tables."""


class ManifestDamagedError(ManifestError):
    """Artifacts.toml was truncated or changed behind the store's back: names may have been lost."""


class Manifest:
    """Read and update one `Artifacts.toml`. `artifacts_dir` (the store's artifacts/) tells an
    empty table from a lost one: a store that holds artifacts had a manifest."""

    def __init__(self, path: Path, artifacts_dir: Optional[Path] = None) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.previous_path = self.path.with_name(self.path.name + ".previous")
        self.artifacts_dir = artifacts_dir
        self._lock = FileLock(str(self.lock_path))  # one instance: re-entrant within this process

    def read(self) -> Table:
        """The whole table ({} when the store is new), every entry checked; ManifestDamagedError
        when the file is not what we last wrote, ManifestError when it is not a valid manifest."""
        try:
            with open(self.path, "rb") as file:
                data = file.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            if self._store_has_content():
                raise self._damaged("it is missing, yet the store holds artifacts") from None
            return {}
        except OSError as error:
            raise ManifestError(f"cannot read {self.path}: {error.strerror}") from None
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{self.path} is larger than {MAX_MANIFEST_BYTES} bytes: not an Artifacts.toml")
        count = self._check_integrity(data)
        table = self._parse(data)
        if count is not None and count != len(table):
            raise self._damaged(f"its trailer counts {count} entries, the table holds {len(table)}")
        for name, entry in table.items():
            check_entry(name, entry, self.path)
        return table

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the writers' lock (other processes wait; readers are never blocked). Re-entrant."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            yield

    def update(self, change: Callable[[Table], None]) -> Table:
        """Apply `change` to the current table in place and write the result atomically, under the
        lock. A damaged table raises before anything is written."""
        with self.locked():
            table = self.read()
            change(table)
            self._write(table)
            return table

    def ensure_exists(self) -> None:
        """Write an empty table if there is none yet (under the lock), so that artifacts never
        exist without a manifest: a missing manifest then always means a lost one."""
        with self.locked():
            if not self.path.exists():
                self._write(self.read())

    # --- private --------------------------------------------------------------------------------

    def _check_integrity(self, data: bytes) -> Optional[int]:
        """The entry count of our trailer; None for a file we did not write (no header, no trailer)."""
        body_end = data.rfind(b"\n# hgf-bridge integrity: ") + 1
        trailer = TRAILER.fullmatch(data[body_end:]) if body_end else None
        if trailer is None:
            if data.startswith(HEADER):
                raise self._damaged("its integrity trailer (the last line) is missing: the file was cut short")
            if HEADER.startswith(data) and (data or self._store_has_content()):
                raise self._damaged(f"it holds only the first {len(data)} bytes of its header")
            return None
        if hashlib.sha256(data[:body_end]).hexdigest() != trailer.group(2).decode():
            raise self._damaged("its content does not match the checksum in its last line")
        return int(trailer.group(1))

    def _parse(self, data: bytes) -> Table:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ManifestError(f"{self.path} is UTF-16 text; Artifacts.toml must be UTF-8")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ManifestError(
                f"{self.path} is not UTF-8 text (byte {error.start} is {data[error.start]:#04x}): not an Artifacts.toml"
            ) from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ManifestError(f"{self.path} is not valid TOML: {error}") from None
        except RecursionError:
            raise ManifestError(f"{self.path} nests tables or arrays too deeply to be an Artifacts.toml") from None

    def _write(self, table: Table) -> None:
        from pickle_io.atomic_file import replacing  # here: lookups only read the table

        body = HEADER + tomli_w.dumps(dict(sorted(table.items()))).encode("utf-8")
        trailer = b"# hgf-bridge integrity: entries=%d sha256=%s\n" % (
            len(table),
            hashlib.sha256(body).hexdigest().encode(),
        )
        if self.path.exists():  # the way back: the table this write replaces, linked, not copied
            with replacing(self.previous_path) as previous:
                try:
                    os.link(self.path, previous)
                except OSError:  # a filesystem without hard links
                    shutil.copyfile(self.path, previous)
        with replacing(self.path) as temporary, open(temporary, "wb") as file:
            file.write(body + trailer)
            file.flush()
            os.fsync(file.fileno())

    def _store_has_content(self) -> bool:
        if self.previous_path.exists():
            return True
        directory = self.artifacts_dir
        return directory is not None and directory.is_dir() and any(os.scandir(directory))

    def _damaged(self, reason: str) -> ManifestDamagedError:
        return ManifestDamagedError(
            f"{self.path} is damaged: {reason}. Names may have been lost, so nothing was written or deleted. "
            f"To recover, compare it with {self.previous_path} (the table before the last change) and copy that "
            f"over it, then register again what is missing; `hgf artifacts verify` checks the result. If you "
            f"changed the file by hand on purpose, delete its first line to have it read unchecked."
        )


def check_entry(name: str, entry: Any, path: Path) -> None:
    """ManifestError unless `entry` is a usable artifact table: its hashes are hex (never a path),
    its `file` a plain file name, its `size` a count."""
    where = f"{path}: entry {name!r}"
    try:
        canonical_name(name)
    except InvalidNameError as error:
        raise ManifestError(f"{where}: {error}") from None
    if not isinstance(entry, dict):
        raise ManifestError(f"{where} is a {type(entry).__name__}, not a table")
    if not is_sha1_hex(entry.get("git-tree-sha1")):
        raise ManifestError(f"{where}: git-tree-sha1 {entry.get('git-tree-sha1')!r} is not 40 lowercase hex digits")
    if "sha256" in entry and not is_sha256_hex(entry["sha256"]):
        raise ManifestError(f"{where}: sha256 {entry['sha256']!r} is not 64 lowercase hex digits")
    if "file" in entry:
        try:
            artifact_filename(entry["file"], where)
        except InvalidNameError as error:
            raise ManifestError(str(error)) from None
    size = entry.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where}: size {size!r} is not a byte count")
