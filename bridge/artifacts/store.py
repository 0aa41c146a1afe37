"""The content-addressed artifact store, laid out like Julia's Artifacts so Julia reads it as is.

    <root>/Artifacts.toml                      name -> git-tree-sha1 (+ our keys)
    <root>/artifacts/<git-tree-sha1>/<file>    one read-only file per artifact
    <root>/blobs/<sha256>                      one inode per distinct content
    <root>/.staging/<pid>-<random>/            work in progress, never seen by readers

Every artifact file is a hard link to its blob, so identical bytes under several names, revisions
or repos take disk space once. A file already in the Hugging Face Hub cache becomes the blob itself
(a hard link to the cache's blob): registering it copies nothing. Bytes are copied only from files
outside the Hub cache (a user's file may change later, the store's copy must not) or across
filesystems.

Publishing follows Pkg: build in a staging directory under the root, rename into place (a target
that already exists is success), then bind the name in Artifacts.toml under a lock. A crash at any
point leaves at most staging debris, which `gc()` removes; never a half-written artifact or name.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterator, List, Optional, Union

import tomli_w

from bridge.artifacts import hubclient
from bridge.artifacts.errors import (
    ArtifactMissingError,
    DownloadError,
    HashMismatchError,
    NotCachedError,
    SourceFileError,
    StoreIOError,
    StoreLayoutError,
)
from bridge.artifacts.hashes import (
    READ_CHUNK,
    ContentHashes,
    hash_file,
    is_sha1_hex,
    is_sha256_hex,
    single_file_tree_hash,
    tree_hash_of_directory,
)
from bridge.artifacts.manifest import Manifest, ManifestError
from bridge.artifacts.names import artifact_filename, artifact_name, canonical_name
from bridge.errors import BridgeError

PathLike = Union[str, os.PathLike]
READ_ONLY_FILE = 0o444
READ_ONLY_DIRECTORY = 0o555

__all__ = ["ArtifactStore", "ArtifactProblem", "artifact_name", "default_root"]  # artifact_name: from names


def default_root() -> Path:
    """`$HGF_BRIDGE_HOME`, else `$XDG_CACHE_HOME/hgf-bridge`, else `~/.cache/hgf-bridge` (read now)."""
    if os.environ.get("HGF_BRIDGE_HOME"):
        return Path(os.environ["HGF_BRIDGE_HOME"]).expanduser()
    return hubclient.xdg_cache_home() / "hgf-bridge"


@dataclass(frozen=True)
class ArtifactProblem:
    """What `verify()` found wrong with one bound name."""

    name: str
    path: Path
    reason: str


class ArtifactStore:
    """Files registered under names, stored once by content, found offline by name.

    The store reads and writes only inside its root: its own directories and files (artifacts/,
    blobs/, .staging/, Artifacts.toml and its lock and previous copy) must be real directories and
    files, never symlinks (StoreLayoutError names the one that is not). The root itself may be a
    symlink, to put the store on another disk.
    """

    def __init__(self, root: Optional[PathLike] = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.artifacts_dir = self.root / "artifacts"
        self.blobs_dir = self.root / "blobs"
        self.staging_dir = self.root / ".staging"
        self.manifest = Manifest(self.root / "Artifacts.toml", self.artifacts_dir)

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    # --- finding -------------------------------------------------------------------------------

    def names(self) -> List[str]:
        """Every bound name, sorted."""
        self.check_layout()
        return sorted(self.manifest.read())

    def entry(self, name: str) -> Dict[str, Any]:
        """The Artifacts.toml table of `name` (git-tree-sha1 and our keys); NotCachedError if unbound.
        `R@main/F` and `R/F` are the same name."""
        name = canonical_name(name)
        self.check_layout()
        table = self.manifest.read()
        if name not in table:
            raise NotCachedError(f"{name!r} is not in the artifact store {self.manifest.path}; {_how_to_fetch(name)}")
        return table[name]

    def tree_hash(self, name: str) -> str:
        """The git-tree-sha1 bound to `name` (what Julia's `artifact_hash(name, toml)` returns)."""
        return self.entry(name)["git-tree-sha1"]

    def resolve(self, name: str) -> Path:
        """The path of the file registered as `name`. Reads only local files: never the network."""
        entry = self.entry(name)
        if "file" not in entry:
            raise ManifestError(f"{self.manifest.path}: entry {name!r} has no 'file' key naming the artifact's file")
        directory = self.artifacts_dir / entry["git-tree-sha1"]
        path = directory / artifact_filename(entry["file"], f"entry {name!r}")
        for link in (directory, path):
            if link.is_symlink():
                raise StoreLayoutError(
                    f"{name!r}: {link} is a symlink, not a file of the store; `hgf artifacts verify` lists "
                    f"such damage, and registering the file again repairs it"
                )
        if not path.is_file():
            raise NotCachedError(
                f"{name!r} is bound in {self.manifest.path} but {path} is missing; "
                f"remove the name (`hgf artifacts remove {name}`) and fetch it again"
            )
        return path

    # --- registering ---------------------------------------------------------------------------

    def register_file(self, path: PathLike, name: str, **meta: Any) -> str:
        """Register the file at `path` as `name`; returns its git-tree-sha1.

        `meta` is kept in the name's Artifacts.toml table. Its `sha256` or `etag` (a sha256 or a git
        blob sha1, as the Hub gives) is checked against the bytes: a mismatch raises
        HashMismatchError and registers nothing. `file` names the artifact's file (default: the
        source's name). A file inside the Hub cache is linked, any other file is copied. An
        artifact or blob already in the store for these bytes is checked, and replaced if damaged.
        """
        name = canonical_name(name)
        source = Path(path)
        meta = {key: value for key, value in meta.items() if value is not None}  # TOML has no null
        if not source.is_file():
            raise SourceFileError(f"cannot register {name!r}: {source} is not a file")
        meta.setdefault("file", source.name)
        meta.setdefault("source", str(source))
        filename = artifact_filename(meta["file"], f"cannot register {name!r}")
        with self._writing(f"register {name!r}"), self._staging() as stage:
            staged = stage / "content"
            hashes = self._stage_local_file(source, staged)
            return self._publish(stage, staged, hashes, name, filename, meta)

    def register_url(self, url: str, name: str, sha256: Optional[str] = None) -> str:
        """Download `url` (http, https or file) and register it as `name`; returns its git-tree-sha1.

        With `sha256`, bytes that hash otherwise raise HashMismatchError and nothing is registered.
        """
        name = canonical_name(name)
        filename = PurePosixPath(urllib.request.urlparse(url).path).name or "download"
        filename = artifact_filename(filename, f"cannot register {name!r} from {url}")
        meta: Dict[str, Any] = {"file": filename, "source": url}
        if sha256:
            meta["sha256"] = sha256
        with self._writing(f"register {name!r}"), self._staging() as stage:
            staged = stage / "content"
            hashes = _download_url(url, staged)
            return self._publish(stage, staged, hashes, name, filename, meta)

    def register_hub(self, repo_id: str, filename: str, revision: str = hubclient.DEFAULT_REVISION) -> str:
        """Download a Hub file through the Hub cache and register it as `artifact_name(...)`;
        returns its git-tree-sha1. The bytes are checked against the Hub's etag."""
        name = canonical_name(artifact_name(repo_id, filename, revision))
        self.check_layout()
        self.manifest.read()  # a damaged manifest stops us before any download
        hub_file = hubclient.download(repo_id, filename, revision)
        meta: Dict[str, Any] = {
            "repo": repo_id,
            "revision": revision or hubclient.DEFAULT_REVISION,
            "commit": hub_file.commit,
            "file": filename,
            "source": hub_file.url,
        }
        if hub_file.etag:
            meta["etag"] = hub_file.etag
        try:
            return self.register_file(hub_file.path, name, **meta)
        except HashMismatchError:
            hubclient.discard_corrupt(hub_file)  # so that the next try downloads again
            raise

    def remove(self, name: str) -> None:
        """Unbind `name`. Its bytes stay until `gc()` (another name may share them)."""
        name = canonical_name(name)

        def unbind(table: Dict[str, Any]) -> None:
            if name not in table:
                raise ArtifactMissingError(f"no artifact named {name!r} in {self.manifest.path}")
            del table[name]

        self.check_layout()
        with self._writing(f"remove {name!r}"):
            self.manifest.update(unbind)

    # --- checking and cleaning -----------------------------------------------------------------

    def check_layout(self) -> None:
        """StoreLayoutError unless each of the store's own paths that exists is a real directory or
        file (no symlink, so nothing is ever followed out of the root)."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreLayoutError(f"the artifact store root {self.root} is not a directory")
        for path in (self.artifacts_dir, self.blobs_dir, self.staging_dir):
            _check_real(path, self.root, directory=True)
        for path in (self.manifest.path, self.manifest.lock_path, self.manifest.previous_path):
            _check_real(path, self.root, directory=False)

    def verify(self) -> List[ArtifactProblem]:
        """Re-hash every bound artifact; returns what is missing or corrupt ([] when all is well)."""
        self.check_layout()
        problems = []
        with self._writing("verify the store", reading=True):
            for name, entry in sorted(self.manifest.read().items()):
                reason, path = self._artifact_problem(name, entry)
                if reason:
                    problems.append(ArtifactProblem(name, path, reason))
        return problems

    def gc(self, dry_run: bool = False) -> List[Path]:
        """Delete artifacts no name binds, blobs no bound artifact uses, and staging left by dead
        processes; returns those paths. With `dry_run`, only lists them. Only entries the store
        made (named by their hash, or `<pid>-...` in .staging) are ever deleted."""
        self.check_layout()
        with self._writing("collect garbage"), self.manifest.locked():
            table = self.manifest.read()  # a damaged manifest raises: nothing is deleted
            bound_trees = {entry["git-tree-sha1"] for entry in table.values()}
            bound_blobs = {entry.get("sha256") for entry in table.values()}
            doomed = [
                path for path in _children(self.artifacts_dir) if is_sha1_hex(path.name) and path.name not in bound_trees
            ]
            doomed += [
                path for path in _children(self.blobs_dir) if is_sha256_hex(path.name) and path.name not in bound_blobs
            ]
            doomed += [path for path in _children(self.staging_dir) if not _owner_alive(path)]
            if not dry_run:
                for path in doomed:
                    _delete(path)
        return doomed

    # --- publishing (private) ------------------------------------------------------------------

    def _artifact_problem(self, name: str, entry: Dict[str, Any]) -> tuple:
        """(reason, path) of what is wrong with one bound artifact, or (None, path)."""
        directory = self.artifacts_dir / entry["git-tree-sha1"]
        if directory.is_symlink():
            return f"damaged: the artifact directory is a symlink to {os.readlink(directory)!r}", directory
        filename = artifact_filename(entry["file"], name) if "file" in entry else None
        path = directory / filename if filename else directory
        if not directory.is_dir() or (filename and not os.path.lexists(path)):
            return "missing", path
        if filename:
            if path.is_symlink() or not path.is_file():
                return "damaged: the artifact's file is a symlink or not a regular file", path
            extra = sorted(set(os.listdir(directory)) - {filename})
            if extra:
                return f"damaged: the artifact directory also holds {', '.join(map(repr, extra))}", path
        actual_tree = tree_hash_of_directory(directory)
        if actual_tree != entry["git-tree-sha1"]:
            return f"corrupt: tree hash is {actual_tree}, not {entry['git-tree-sha1']}", path
        if filename and "sha256" in entry and hash_file(path).sha256 != entry["sha256"]:
            return "corrupt: sha256 differs from Artifacts.toml", path
        return None, path

    @contextmanager
    def _writing(self, action: str, reading: bool = False) -> Iterator[None]:
        """Turn the operating system's refusals (read-only store, full disk) into StoreIOError."""
        try:
            yield
        except BridgeError:
            raise
        except OSError as error:
            raise StoreIOError(_os_error_message(error, action, self.root, reading)) from None

    @contextmanager
    def _staging(self) -> Iterator[Path]:
        """A fresh directory under the root, removed afterwards whatever happens."""
        self.check_layout()
        self.manifest.read()  # refuse early over a damaged manifest, before copying any bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=self.staging_dir, prefix=f"{os.getpid()}-"))
        try:
            yield stage
        finally:
            _delete(stage)

    def _stage_local_file(self, source: Path, staged: Path) -> ContentHashes:
        """Put `source`'s bytes at `staged` (a hard link when it is a Hub cache blob) and hash them."""
        if _is_inside(source.resolve(), hubclient.hub_cache_dir().resolve()):
            try:
                os.link(source.resolve(), staged)
                return hash_file(staged)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
        with open(staged, "wb") as copy:
            return hash_file(source, copy_to=copy)

    def _publish(
        self, stage: Path, staged: Path, hashes: ContentHashes, name: str, filename: str, meta: Dict[str, Any]
    ) -> str:
        _check_expected_hashes(hashes, meta, name)
        tree_sha1 = single_file_tree_hash(filename, hashes.git_sha1)
        entry = {"git-tree-sha1": tree_sha1, **meta, "sha256": hashes.sha256, "size": hashes.size}
        _check_writable_entry(name, entry)
        # Under the writers' lock, so that gc() never sees a published artifact not yet bound.
        with self.manifest.locked():
            self.manifest.ensure_exists()
            blob = self._publish_blob(stage, staged, hashes.sha256)
            self._publish_artifact(stage, blob, filename, tree_sha1)
            self.manifest.update(lambda table: table.__setitem__(name, entry))
        return tree_sha1

    def _publish_blob(self, stage: Path, staged: Path, sha256: str) -> Path:
        """The store's one inode for this content: `staged` itself, unless a sound blob is already
        there. A damaged one (changed bytes, a symlink) is set aside and replaced by `staged`."""
        self.blobs_dir.mkdir(exist_ok=True)
        blob = self.blobs_dir / sha256
        os.chmod(staged, READ_ONLY_FILE)
        try:
            os.link(staged, blob)
            return blob
        except FileExistsError:
            pass  # same bytes registered before (or concurrently): share that copy, if it is sound
        if blob.is_symlink() or not blob.is_file():
            _move_aside(blob, stage / "damaged-blob")
        elif os.path.samefile(staged, blob) or hash_file(blob).sha256 == sha256:
            return blob
        else:
            _move_aside(blob, stage / "damaged-blob")
        os.link(staged, blob)
        return blob

    def _publish_artifact(self, stage: Path, blob: Path, filename: str, tree_sha1: str) -> None:
        """Rename a directory holding a link to `blob` into `artifacts/<tree_sha1>` (Pkg's way). An
        artifact already there is kept if it is exactly that link, else set aside and replaced."""
        self.artifacts_dir.mkdir(exist_ok=True)
        target = self.artifacts_dir / tree_sha1
        if os.path.lexists(target):
            if _is_sound_artifact(target, filename, blob):
                return
            _move_aside(target, stage / "damaged-artifact")
        tree = stage / "tree"
        tree.mkdir()
        os.link(blob, tree / filename)
        try:
            os.rename(tree, target)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return  # another process published the same artifact first: that is success
        os.chmod(target, READ_ONLY_DIRECTORY)


def _check_real(path: Path, root: Path, directory: bool) -> None:
    kind = "directory" if directory else "file"
    if path.is_symlink():
        raise StoreLayoutError(
            f"{path} is a symlink (to {os.readlink(path)!r}); the store never follows a link out of {root}: "
            f"replace it with a real {kind}"
        )
    if path.exists() and path.is_dir() != directory:
        raise StoreLayoutError(f"{path} should be a {kind} of the artifact store; move it away")


def _is_sound_artifact(target: Path, filename: str, blob: Path) -> bool:
    """Whether `target` is a real directory holding exactly `filename`, a hard link to `blob`."""
    if target.is_symlink() or not target.is_dir():
        return False
    file = target / filename
    try:
        return os.listdir(target) == [filename] and not file.is_symlink() and os.path.samefile(file, blob)
    except OSError:
        return False


def _move_aside(path: Path, destination: Path) -> None:
    """Rename a damaged entry into the staging directory (deleted with it)."""
    if path.is_dir() and not path.is_symlink():
        os.chmod(path, stat.S_IRWXU)  # moving a directory rewrites its '..' entry
    os.rename(path, destination)


def _check_writable_entry(name: str, entry: Dict[str, Any]) -> None:
    try:
        tomli_w.dumps({name: entry}).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as error:
        raise ManifestError(f"metadata of {name!r} cannot be written to Artifacts.toml: {error}") from None


def _os_error_message(error: OSError, action: str, root: Path, reading: bool) -> str:
    where = f"{error.strerror or error} ({error.filename})" if error.filename else f"{error.strerror or error}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "the disk is full: free some space or set HGF_BRIDGE_HOME to a store on another disk"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and not reading:
        hint = f"the store {root} is not writable: fix its permissions or set HGF_BRIDGE_HOME to a writable directory"
    else:
        hint = "nothing was changed"
    return f"cannot {action}: {where}; {hint}"


def _how_to_fetch(name: str) -> str:
    """A hint for an unbound name. Hub names read '<repo_id>[@<revision>]/<file>' (see artifact_name),
    where the repo id is 'name' or 'org/name': a guess, good enough for a message."""
    parts = name.split("/")
    if len(parts) < 2:
        return "register a file under it with `hgf artifacts register PATH NAME`"
    repo_parts = 1 if "@" in parts[0] or len(parts) == 2 else 2
    repo_id, _, revision = "/".join(parts[:repo_parts]).partition("@")
    filename = "/".join(parts[repo_parts:])
    return f"fetch it with `{hubclient.fetch_command(repo_id, filename, revision or None)}` (needs network)"


def _check_expected_hashes(hashes: ContentHashes, meta: Dict[str, Any], name: str) -> None:
    """The Hub's etag is a sha256 for LFS files and a git blob sha1 for the others."""
    expected = {"sha256": meta.get("sha256")}
    etag = meta.get("etag")
    if etag:
        expected["sha256" if len(etag) == 64 else "git blob sha1"] = etag
    actual = {"sha256": hashes.sha256, "git blob sha1": hashes.git_sha1}
    for kind, value in expected.items():
        if value and value.lower() != actual[kind]:
            raise HashMismatchError(
                f"{name!r} from {meta.get('source', '?')}: {kind} of the bytes is {actual[kind]}, "
                f"expected {value}; nothing registered"
            )


def _download_url(url: str, staged: Path) -> ContentHashes:
    try:
        with urllib.request.urlopen(url) as response, open(staged, "wb") as out:
            shutil.copyfileobj(response, out, READ_CHUNK)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DownloadError(f"could not download {url}: {error}") from None
    return hash_file(staged)


def _is_inside(path: Path, directory: Path) -> bool:
    return directory == path or directory in path.parents


def _children(directory: Path) -> List[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []


def _owner_alive(stage: Path) -> bool:
    """Staging directories are named `<pid>-...`; one whose process is gone is debris."""
    pid = stage.name.split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete(path: Path) -> None:
    """Remove a file or a tree, making read-only directories writable first."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    for directory, _, _ in os.walk(path):
        os.chmod(directory, stat.S_IRWXU)
    shutil.rmtree(path, ignore_errors=True)
