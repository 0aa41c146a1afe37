"""`fetch_file`: the one way every loader gets a file of a model, from a local directory or the Hub.

A Hub file is looked up in the artifact store by name first (no network), else downloaded through
the Hub cache, checked against the Hub's etag and registered, so the next lookup is offline.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional, Union

from bridge.artifacts import EntryNotFoundError, InvalidNameError, NotCachedError, get_or_download_hgf_file
from bridge.artifacts.hubclient import DEFAULT_REVISION, HubSettings

__all__ = ["check_relative_path", "fetch_file", "is_local_source", "offline_hub_source"]


def check_relative_path(filename: object) -> Optional[str]:
    """Why `filename` is not a file path inside a model directory or repo (None if it is one):
    the names a shard index or a caller gives must never reach outside (`../x`, `/etc/x`)."""
    if not isinstance(filename, str) or not filename:
        return "is not a file name"
    if "\x00" in filename or "\\" in filename:
        return "holds a NUL or a backslash; expected a relative path inside the model"
    if PurePosixPath(filename).is_absolute() or PureWindowsPath(filename).drive:
        return "is an absolute path; expected a relative path inside the model"
    if ".." in PurePosixPath(filename).parts:
        return "leaves the model directory ('..'); expected a relative path inside it"
    return None


def is_local_source(source: Union[str, os.PathLike]) -> bool:
    """Whether `source` names a local directory (rather than a Hub repo id)."""
    return Path(source).expanduser().is_dir()


def offline_hub_source(source: Union[str, os.PathLike]) -> bool:
    """Whether `source` is a Hub repo while HF_HUB_OFFLINE is set: a file it lacks may just not be fetched yet."""
    return not is_local_source(source) and HubSettings.from_environment().offline


def fetch_file(
    source: Union[str, os.PathLike],
    filename: str,
    *,
    revision: Optional[str] = None,
    missing_ok: bool = False,
) -> Optional[Path]:
    """The local path of `filename` from `source`, a local directory or a Hub repo id.

    Returns None only when `missing_ok` and the file does not exist (in the directory, in the repo,
    or, offline, in the store). Raises EntryNotFoundError, RepoNotFoundError,
    RevisionNotFoundError, NotCachedError (offline and not registered), DownloadError or
    HashMismatchError, each naming the repo and file; InvalidNameError for a `filename` that would
    reach outside the directory or repo.
    """
    problem = check_relative_path(filename)
    if problem:
        raise InvalidNameError(f"file {filename!r} of {source}: {problem}")
    if is_local_source(source):
        path = Path(source).expanduser() / filename
        if path.is_file():
            return path
        if missing_ok:
            return None
        raise EntryNotFoundError(f"directory {source} has no file {filename!r}")
    try:
        return get_or_download_hgf_file(str(source), filename, revision or DEFAULT_REVISION)
    except EntryNotFoundError:
        if missing_ok:
            return None
        raise
    except NotCachedError:
        # Offline, we cannot tell a file the repo lacks from one never fetched: an optional file
        # (say model.safetensors next to pytorch_model.bin) counts as absent.
        if missing_ok and offline_hub_source(source):
            return None
        raise
