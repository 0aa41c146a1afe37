"""The artifact store: files registered once by content, found by name, offline, from Python and Julia.

    from bridge.artifacts import ArtifactStore, get_or_download_hgf_file
    path = get_or_download_hgf_file("bert-base-cased", "config.json")   # downloads once
    ArtifactStore().resolve("bert-base-cased/config.json")              # no network, ever

See docs/artifacts.md for the layout (Julia's Artifacts) and the naming scheme.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from bridge.artifacts.errors import (
    ArtifactMissingError,
    DownloadError,
    EntryNotFoundError,
    HashMismatchError,
    HostileServerError,
    InvalidNameError,
    NotCachedError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceFileError,
    StoreIOError,
    StoreLayoutError,
)
from bridge.artifacts.hubclient import DEFAULT_REVISION
from bridge.artifacts.manifest import ManifestDamagedError, ManifestError
from bridge.artifacts.names import artifact_name
from bridge.artifacts.store import ArtifactProblem, ArtifactStore, default_root

__all__ = [
    "ArtifactStore",
    "ArtifactProblem",
    "artifact_name",
    "default_root",
    "get_or_download_hgf_file",
    "find_or_register_hgf_file_hash",
    "ArtifactMissingError",
    "DownloadError",
    "EntryNotFoundError",
    "HashMismatchError",
    "HostileServerError",
    "InvalidNameError",
    "ManifestDamagedError",
    "ManifestError",
    "NotCachedError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "SourceFileError",
    "StoreIOError",
    "StoreLayoutError",
]


def get_or_download_hgf_file(repo_id: str, filename: str, revision: str = DEFAULT_REVISION) -> Path:
    """The stored path of a Hub file: the registered artifact if there is one (no network), else
    downloaded through the Hub cache, checked and registered first."""
    store = ArtifactStore()
    name = artifact_name(repo_id, filename, revision)
    if name not in store.names():
        store.register_hub(repo_id, filename, revision)
    return store.resolve(name)


def find_or_register_hgf_file_hash(path_or_url: Union[str, os.PathLike], repo_id: str, filename: str) -> str:
    """The git-tree-sha1 of `"<repo_id>/<filename>"`, registering `path_or_url` (a local file or an
    http(s)/file URL) under that name first if it is not bound yet."""
    store = ArtifactStore()
    name = artifact_name(repo_id, filename)
    if name in store.names():
        return store.tree_hash(name)
    location = str(path_or_url)
    if "://" in location:
        return store.register_url(location, name)
    return store.register_file(location, name, repo=repo_id, file=filename)
