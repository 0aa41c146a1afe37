"""Artifact names and artifact file names: what the store accepts, and one spelling per name.

A name is any non-blank text that encodes as UTF-8 (Artifacts.toml is UTF-8; a lone surrogate
cannot be written). Hub files are named `"<repo_id>/<file>"`, or `"<repo_id>@<revision>/<file>"`
for another revision than the default branch; `R@main/F` is the same name as `R/F`, and every entry
point spells it `R/F`. A file name is the base name an artifact's file has on disk: never empty,
`.` or `..`, and without `/` or NUL.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Optional

from bridge.artifacts.errors import InvalidNameError
from bridge.artifacts.hubclient import DEFAULT_REVISION

MAX_NAME_LENGTH = 4096


def artifact_name(repo_id: str, filename: str, revision: Optional[str] = None) -> str:
    """The stable name of a Hub file: `"<repo_id>/<file>"`, or `"<repo_id>@<revision>/<file>"` when
    a revision other than the default branch is asked for."""
    if revision and revision != DEFAULT_REVISION:
        return f"{repo_id}@{revision}/{filename}"
    return f"{repo_id}/{filename}"


def canonical_name(name: Any) -> str:
    """`name` checked (InvalidNameError) and spelled as the store keeps it: `R@main/F` -> `R/F`."""
    if not isinstance(name, str):
        raise InvalidNameError(f"an artifact name is text, not {type(name).__name__} ({name!r})")
    if not name.strip():
        raise InvalidNameError(f"artifact name {name!r} is empty or only whitespace; give a name such as 'org/model/file'")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"artifact name {name[:40]!r}... is {len(name)} characters; at most {MAX_NAME_LENGTH}")
    _check_utf8(name, "artifact name")
    repo_id, at, rest = name.partition("@")
    if at and rest.startswith(DEFAULT_REVISION + "/"):
        return artifact_name(repo_id, rest[len(DEFAULT_REVISION) + 1 :])
    return name


def artifact_filename(file: Any, context: str) -> str:
    """The base name an artifact's file gets, from a `file` value (a path in a repo, or a name);
    InvalidNameError, naming `context`, when there is no usable base name."""
    if not isinstance(file, str):
        raise InvalidNameError(f"{context}: file must be text, not {type(file).__name__} ({file!r})")
    _check_utf8(file, f"{context}: file")
    base = PurePosixPath(file).name
    if base in ("", ".", "..") or "\x00" in file or file.endswith("/"):
        raise InvalidNameError(f"{context}: file {file!r} has no usable file name (not empty, '.', '..' or a directory)")
    return base


def _check_utf8(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidNameError(
            f"{what} {text!r} cannot be stored: character {error.start} is a lone surrogate, not UTF-8 text"
        ) from None
