"""Downloads from the Hugging Face Hub through `huggingface_hub`, with settings read at call time.

huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE and friends once, when it is
imported. We read them from `os.environ` on every call and pass them explicitly, so a program (or a
test) that changes them later is obeyed. The client's own errors become our `BridgeError`s with a
message that says what is missing and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from bridge.artifacts.errors import (
    DownloadError,
    EntryNotFoundError,
    NotCachedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)

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


def _hub_file(repo_id: str, filename: str, revision: str, pointer: Path, settings: HubSettings) -> HubFile:
    # The cache layout is snapshots/<commit>/<filename> -> ../../blobs/<etag> (see REFERENCE.md section 3).
    commit = pointer.parents[len(Path(filename).parts) - 1].name
    etag = Path(os.readlink(pointer)).name if pointer.is_symlink() else None
    url = f"{settings.endpoint}/{repo_id}/resolve/{commit}/{filename}"
    return HubFile(repo_id, filename, revision, commit, pointer, etag, url)

