"""Checkpoint files: find a model's weights for a source, read them as numpy arrays, write them.

Reading goes through `bridge.hub.fetch_file` (a local directory or a Hub repo id, resolved through
the artifact store) and `pickle_io` (safetensors, zip and legacy pickles, sharded indexes), never
`torch.load`. Arrays come back memory-mapped where the format allows, so reading costs no copy.
This module knows file names and formats, not models.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from bridge.errors import BridgeError

Source = Union[str, os.PathLike]

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
# Looked for in this order; the first one present is the checkpoint (transformers' preference).
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, PICKLE, PICKLE_INDEX)
SHARD_NAME = re.compile(r"^(model|pytorch_model)-\d+-of-\d+\.(safetensors|bin)$")


class WeightsNotFoundError(BridgeError, FileNotFoundError):
    """A source without any weights file."""


def split_source(source: Source, revision: Optional[str]) -> Tuple[Source, Optional[str]]:
    """A local directory or repo id, and its revision, from a source that may be an hgf spec.

    `"org/name@rev:model"` -> (`"org/name"`, `"rev"`); `"<dir>:model"` -> (`"<dir>"`, revision).
    A source that is an existing path is never split.
    """
    if not isinstance(source, str) or os.path.exists(source) or ":" not in source:
        return source, revision
    repo = source.rpartition(":")[0]
    if "@" in repo and not os.path.exists(repo):
        repo, _, spec_revision = repo.rpartition("@")
        revision = revision or spec_revision
    return repo, revision


def fetch(source: Source, filename: str, *, revision: Optional[str] = None, missing_ok: bool = False):
    """One file of a source, through the artifact store (see `bridge.hub.fetch_file`)."""
    from bridge.hub import fetch_file

    return fetch_file(str(source), filename, revision=revision, missing_ok=missing_ok)


def read_weights(source: Source, *, revision: Optional[str] = None) -> Dict[str, np.ndarray]:
    """{tensor name: numpy array} of the first weights file found for `source`.

    For a sharded checkpoint every shard the index lists is fetched first, so that a Hub source
    has them all in place beside the index.
    """
    import pickle_io

    for filename in WEIGHT_FILES:
        path = fetch(source, filename, revision=revision, missing_ok=True)
        if path is None:
            continue
        path = Path(path)
        if filename.endswith(".index.json"):
            for shard in sorted(set(_read_index(path).values())):
                fetch(source, shard, revision=revision)
            return dict(pickle_io.load_sharded(path))
        if filename == PICKLE:
            return dict(pickle_io.load(path, mmap=True))
        return dict(pickle_io.load_sharded(path.parent))
    raise WeightsNotFoundError(f"{source}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def _read_index(path: Path) -> Dict[str, str]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WeightsNotFoundError(f"{path}: not a valid sharded-checkpoint index ({error})") from None
    return weight_map


def parse_size(size: Union[int, str]) -> int:
    """Bytes in "5GB", "200MB", "1GiB" or an int (transformers' units: GB = 10^9, GiB = 2^30)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", size, re.IGNORECASE)
    if not match:
        raise ValueError(f"max_shard_size {size!r}: expected an int or a size like '5GB' or '500MiB'")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    powers = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    powers.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
    return int(number * powers[unit])


def write_weights(
    arrays: Dict[str, np.ndarray],
    directory: Path,
    *,
    safe_serialization: bool = True,
    max_shard_size: Union[int, str] = "5GB",
) -> None:
    """Write `arrays` into `directory` as transformers lays them out, then remove stale weights.

    One model.safetensors (metadata {"format": "pt"}) or pytorch_model.bin (torch's zip format,
    written by pickle_io); past `max_shard_size`, numbered shards plus an index. Every file is
    written to a temporary name and renamed into place.
    """
    import pickle_io

    limit = parse_size(max_shard_size)
    total = sum(array.nbytes for array in arrays.values())
    if total > limit:
        pickle_io.save_sharded(
            arrays, directory, max_shard_size=limit, format="safetensors" if safe_serialization else "bin"
        )
        index = SAFETENSORS_INDEX if safe_serialization else PICKLE_INDEX
        written = {index, *_read_index(directory / index).values()}
    else:
        name = SAFETENSORS if safe_serialization else PICKLE
        _write_atomically(directory / name, arrays, safe_serialization)
        written = {name}
    for path in directory.iterdir():
        if path.name not in written and (path.name in WEIGHT_FILES or SHARD_NAME.match(path.name)):
            path.unlink()


def _write_atomically(path: Path, arrays: Dict[str, np.ndarray], safe_serialization: bool) -> None:
    import pickle_io
    from safetensors.numpy import save_file

    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if safe_serialization:
            save_file(arrays, temp, metadata={"format": "pt"})
        else:
            pickle_io.save(arrays, temp, format="zip")
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
