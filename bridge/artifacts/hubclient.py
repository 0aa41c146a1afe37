"""Downloads from the Hugging Face Hub through `huggingface_hub`, with settings read at call time.

huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE and friends once, when it is
imported. We read them from `os.environ` on every call and pass them explicitly, so a program (or a
test) that changes them later is obeyed. The client's own errors become our `BridgeError`s with a
message that says what is missing and what to do.

huggingface_hub builds cache paths from what the server says: the blob is `blobs/<ETag>`, the
snapshot `snapshots/<X-Repo-Commit>/`. A lying server could make it write outside its cache (an ETag
of `../../x`) or fill the disk (a body that never ends). While one of our downloads runs, a response
hook on huggingface_hub's HTTP client checks every answer before the client acts on it: an ETag or
commit that is not a hex hash is refused before anything is written, and a body is cut off (and
refused) at the size the server declared. Other users of huggingface_hub in the process are not
affected: the hook only acts inside `download()`.
"""

from __future__ import annotations

import contextvars
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from bridge.artifacts.errors import (
    DownloadError,
    EntryNotFoundError,
    HostileServerError,
    NotCachedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from bridge.artifacts.hashes import is_sha1_hex, is_sha256_hex

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
_TRUE_VALUES = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubSettings:
    """The Hub environment variables, as they are now."""

    endpoint: str
    cache_dir: Path
    token: Union[str, bool]  # False: send no token
    offline: bool

    @classmethod
    def from_environment(cls) -> "HubSettings":
        return cls(
            endpoint=os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/"),
            cache_dir=hub_cache_dir(),
            token=_token(),
            offline=os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE_VALUES,
        )


@dataclass(frozen=True)
class HubFile:
    """A file of a Hub repo as it lies in the Hub cache."""

    repo_id: str
    filename: str
    revision: str
    commit: str
    path: Path  # snapshots/<commit>/<filename>, a symlink to blobs/<etag> on POSIX
    etag: Optional[str]  # sha256 (LFS) or git blob sha1; None when the cache holds copies, not links
    url: str
    repo_dir: Path  # <Hub cache>/models--<org>--<name>


def xdg_cache_home() -> Path:
    """`$XDG_CACHE_HOME` when set and not empty, else `~/.cache`."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))


def hf_home() -> Path:
    """`$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`."""
    if "HF_HOME" in os.environ:
        return Path(os.environ["HF_HOME"]).expanduser()
    return xdg_cache_home() / "huggingface"


def hub_cache_dir() -> Path:
    """`$HF_HUB_CACHE`, else `$HF_HOME/hub`: where huggingface_hub keeps its downloads."""
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(cache).expanduser() if cache else hf_home() / "hub"


def _token() -> Union[str, bool]:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    token_file = hf_home() / "token"
    if token_file.is_file():
        return token_file.read_text().strip() or False
    return False


def download(repo_id: str, filename: str, revision: Optional[str] = None) -> HubFile:
    """Download `filename` of `repo_id` at `revision` into the Hub cache (reusing what is there).

    Offline (`HF_HUB_OFFLINE=1`), only the Hub cache is consulted. The client shows a progress bar
    on a terminal and stays quiet otherwise. Raises RepoNotFoundError,
    RevisionNotFoundError, EntryNotFoundError, NotCachedError or DownloadError.
    """
    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    http = _hub_http_client()
    settings = HubSettings.from_environment()
    revision = revision or DEFAULT_REVISION
    where = f"{filename!r} of {repo_id}@{revision}"
    unreachable = DownloadError(f"could not reach the Hub at {settings.endpoint} for {where}, and it is not cached")
    _install_response_guard()
    guard = _Guard(where, settings.endpoint)
    token = _GUARD.set(guard)
    try:
        pointer = huggingface_hub.hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=settings.cache_dir,
            endpoint=settings.endpoint,
            token=settings.token,
            local_files_only=settings.offline,
        )
    except hub_errors.HFValidationError as error:
        raise RepoNotFoundError(f"{repo_id!r} is not a valid Hub repo id: {error}") from None
    except hub_errors.GatedRepoError:
        raise RepoNotFoundError(
            f"repository {repo_id!r} on {settings.endpoint} is gated: accept its terms on the Hub "
            "and set HF_TOKEN to a token of that account"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise RepoNotFoundError(
            f"repository {repo_id!r} not found on {settings.endpoint} (if it is private, set HF_TOKEN); "
            "expected an existing '<org>/<name>' model repo"
        ) from None
    except hub_errors.RevisionNotFoundError:
        raise RevisionNotFoundError(
            f"repository {repo_id!r} has no revision {revision!r}; expected a branch, tag or commit"
        ) from None
    except hub_errors.RemoteEntryNotFoundError:
        raise EntryNotFoundError(
            f"repository {repo_id!r} has no file {filename!r} at revision {revision!r}"
        ) from None
    except hub_errors.LocalEntryNotFoundError:  # offline, or the Hub is unreachable, and not in the cache
        if settings.offline:
            raise NotCachedError(
                f"{where} is not cached and HF_HUB_OFFLINE is set; fetch it once with network access: "
                f"`{fetch_command(repo_id, filename, revision)}`"
            ) from None
        raise unreachable from None
    except (http.ConnectError, http.TimeoutException):
        raise unreachable from None
    except (hub_errors.HfHubHTTPError, http.HTTPError, OSError) as error:  # broken transfers, disk errors
        raise DownloadError(f"could not download {where} from {settings.endpoint}: {error}") from None
    except HostileServerError:
        _discard_incomplete(repo_id, settings, guard)
        raise
    finally:
        _GUARD.reset(token)
    return _hub_file(repo_id, filename, revision, Path(pointer), settings)


def _hub_http_client() -> Any:
    """The HTTP library huggingface_hub uses (its errors reach us): httpx2 from 2.0, httpx in 1.x."""
    import huggingface_hub

    if int(huggingface_hub.__version__.split(".")[0]) >= 2:
        import httpx2

        return httpx2
    import httpx

    return httpx


def fetch_command(repo_id: str, filename: str, revision: Optional[str] = None) -> str:
    """The `hgf` command line that downloads and registers one file."""
    pinned = f"@{revision}" if revision and revision != DEFAULT_REVISION else ""
    return f"hgf get {repo_id}{pinned} {filename}"


def discard_corrupt(hub_file: HubFile) -> None:
    """Drop a Hub-cache file whose bytes proved wrong, so that the next try downloads it again.

    Only the two paths huggingface_hub made for this file are unlinked, each after checking that it
    lies where the cache layout puts it: the blob `blobs/<etag>` (a regular file named by its hex
    etag) and the pointer `snapshots/<commit>/<file>`. Anything else is left alone."""
    blobs = os.path.realpath(hub_file.repo_dir / "blobs")
    snapshots = os.path.realpath(hub_file.repo_dir / "snapshots")
    if not _is_within(os.path.realpath(hub_file.path.parent), snapshots):
        return
    if hub_file.path.is_symlink() and hub_file.etag:
        blob = Path(os.path.realpath(hub_file.path))
        if str(blob.parent) == blobs and blob.name == hub_file.etag and blob.is_file() and not blob.is_symlink():
            blob.unlink()
    if hub_file.path.is_symlink() or hub_file.path.is_file():
        hub_file.path.unlink()


def _hub_file(repo_id: str, filename: str, revision: str, pointer: Path, settings: HubSettings) -> HubFile:
    # The cache layout is snapshots/<commit>/<filename> -> ../../blobs/<etag> (see REFERENCE.md section 3).
    repo_dir = Path(settings.cache_dir) / ("models--" + repo_id.replace("/", "--"))
    commit = pointer.parents[len(Path(filename).parts) - 1].name
    etag = Path(os.readlink(pointer)).name if pointer.is_symlink() else None
    where = f"{filename!r} of {repo_id}@{revision} in the Hub cache ({pointer})"
    if not is_sha1_hex(commit):
        raise DownloadError(f"{where}: its snapshot folder {commit!r} is not a commit hash; delete it and fetch again")
    if etag is not None:
        target = os.path.realpath(pointer)
        if not (is_sha1_hex(etag) or is_sha256_hex(etag)) or os.path.dirname(target) != os.path.realpath(repo_dir / "blobs"):
            raise DownloadError(
                f"{where} links to {os.readlink(pointer)!r}, not to a blob of the cache; delete the link and fetch again"
            )
    url = f"{settings.endpoint}/{repo_id}/resolve/{commit}/{filename}"
    return HubFile(repo_id, filename, revision, commit, pointer, etag, url, repo_dir)


def _is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + os.sep)


# --- the response guard ------------------------------------------------------------------------


@dataclass
class _Guard:
    """What one download has learnt from the server so far."""

    where: str
    endpoint: str
    etag: Optional[str] = None
    declared_size: Optional[int] = None


_GUARD: contextvars.ContextVar[Optional[_Guard]] = contextvars.ContextVar("hgf_bridge_hub_guard", default=None)


def _install_response_guard() -> None:
    """Make every HTTP client huggingface_hub creates from now on carry `_check_response`.

    huggingface_hub may replace its client mid-download (after a dropped connection), so the hook
    goes into its client factory, not only into today's client."""
    from huggingface_hub.utils import _http, get_session, set_client_factory

    factory = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None)
    if factory is None:  # a huggingface_hub without that factory: hook today's client
        _add_hook(get_session())
        return
    if getattr(factory, "hgf_bridge_guarded", False):
        return

    def guarded_factory() -> Any:
        return _add_hook(factory())

    guarded_factory.hgf_bridge_guarded = True  # type: ignore[attr-defined]
    set_client_factory(guarded_factory)


def _add_hook(client: Any) -> Any:
    hooks = client.event_hooks["response"]
    if _check_response not in hooks:
        hooks.append(_check_response)
    return client


def _check_response(response: Any) -> None:
    """Refuse what no Hub sends, before huggingface_hub uses it (a no-op outside `download()`)."""
    guard = _GUARD.get()
    if guard is None or response.status_code >= 400:
        return
    headers = response.headers
    if response.request.method == "HEAD":
        commit = headers.get("X-Repo-Commit")
        if commit is not None and not is_sha1_hex(commit):
            raise HostileServerError(
                f"the server at {guard.endpoint} sent X-Repo-Commit {commit!r} for {guard.where}, not a commit "
                "hash (40 lowercase hex digits); nothing was downloaded"
            )
        etag = headers.get("X-Linked-Etag") or headers.get("ETag")
        if etag is not None:
            etag = etag.removeprefix("W/").strip('"')
            if not (is_sha1_hex(etag) or is_sha256_hex(etag)):
                raise HostileServerError(
                    f"the server at {guard.endpoint} sent ETag {etag!r} for {guard.where}, not a git sha1 or "
                    "sha256 (lowercase hex); nothing was downloaded"
                )
            guard.etag = etag
        size = headers.get("X-Linked-Size") or headers.get("Content-Length")
        if size is not None and (commit is not None or etag is not None):
            guard.declared_size = _size(size, guard)
        return
    limit = guard.declared_size
    sent = headers.get("Content-Length")
    if sent is not None and limit is not None and _size(sent, guard) > limit:
        raise HostileServerError(
            f"the server at {guard.endpoint} declared {limit} bytes for {guard.where} and then sent a "
            f"Content-Length of {sent}; nothing was kept"
        )
    limit = limit if limit is not None else (None if sent is None else _size(sent, guard))
    if limit is None:
        raise HostileServerError(f"the server at {guard.endpoint} declared no size for {guard.where}; refused")
    response.iter_bytes = _bounded(response.iter_bytes, limit, guard)


def _bounded(iter_bytes: Any, limit: int, guard: _Guard) -> Any:
    def iterate(chunk_size: Optional[int] = None) -> Iterator[bytes]:
        received = 0
        for chunk in iter_bytes(chunk_size):
            received += len(chunk)
            if received > limit:
                raise HostileServerError(
                    f"the server at {guard.endpoint} sent more than the {limit} bytes it declared for "
                    f"{guard.where}; the download was stopped and nothing was kept"
                )
            yield chunk

    return iterate


def _size(value: str, guard: _Guard) -> int:
    if not value.isdigit():
        raise HostileServerError(f"the server at {guard.endpoint} sent a size of {value!r} for {guard.where}")
    return int(value)


def _discard_incomplete(repo_id: str, settings: HubSettings, guard: _Guard) -> None:
    """Remove the partial blob huggingface_hub was writing when the guard stopped the body."""
    if guard.etag is None:
        return
    blobs = Path(settings.cache_dir) / ("models--" + repo_id.replace("/", "--")) / "blobs"
    partial = blobs / f"{guard.etag}.incomplete"
    if partial.is_file() and not partial.is_symlink():
        partial.unlink()

