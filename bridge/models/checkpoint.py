"""Checkpoint files: find a model's weights for a source, read them, write them.

Reading goes through `bridge.hub.fetch_file` (a local directory or a Hub repo id, resolved through
the artifact store) and `pickle_io`, which maps every format copy-on-write into numpy arrays that
torch shares without a copy (never `torch.load`). Writing goes through pickle_io.
This module knows file names and formats, not models.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np

from bridge.errors import BridgeError
from pickle_io.errors import UnsafePickleError

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


class CorruptWeightsError(BridgeError, ValueError):
    """A weights file that cannot be read (truncated, not safetensors, a bad sharded index)."""


class UnsafeWeightsError(BridgeError, UnsafePickleError):
    """A pickle weights file that asks to run code (a global outside the allowlist): never run."""


def fetch(
    source: Source, filename: str, *, revision: Optional[str] = None, missing_ok: bool = False
) -> Optional[Path]:
    """One file of a source, through the artifact store (see `bridge.hub.fetch_file`)."""
    from bridge.hub import fetch_file

    return fetch_file(str(source), filename, revision=revision, missing_ok=missing_ok)


def read_weights(source: Source, *, revision: Optional[str] = None) -> Dict[str, np.ndarray]:
    """{tensor name: numpy array} of the first weights found for `source`.

    For a sharded checkpoint every shard the index lists is fetched (shards of a Hub repo may be
    stored apart from the index) and read in turn.
    """
    for filename in WEIGHT_FILES:
        path = fetch(source, filename, revision=revision, missing_ok=True)
        if path is None:
            continue
        if not filename.endswith(".index.json"):
            return read_weights_file(Path(path))
        tensors: Dict[str, np.ndarray] = {}
        for shard in sorted(set(_read_index(Path(path)).values())):
            tensors.update(read_weights_file(Path(fetch(source, shard, revision=revision))))
        return tensors
    raise WeightsNotFoundError(f"{source}: no weights found (looked for {', '.join(WEIGHT_FILES)})")


def read_weights_file(path: Path) -> Dict[str, np.ndarray]:
    """The tensors of one weights file (safetensors, or a torch pickle read by pickle_io, never
    torch.load), mapped copy-on-write: nothing is copied up front, and changing a loaded model
    never writes to the file."""
    import pickle_io

    try:
        loaded = pickle_io.load(path, mmap=True, writable=True)
    except pickle_io.UnsafePickleError as error:
        raise UnsafeWeightsError(_naming(path, error)) from error
    except pickle_io.PickleIOError as error:  # damaged or not a checkpoint
        raise CorruptWeightsError(_naming(path, error)) from error
    if not isinstance(loaded, Mapping):
        raise CorruptWeightsError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    for name, value in loaded.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise CorruptWeightsError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return dict(loaded)


def _naming(path: Path, error: Exception) -> str:
    """The error's message, starting with the file it is about."""
    message = str(error)
    return message if str(path) in message or path.name in message else f"{path}: {message}"


def _read_index(path: Path) -> Dict[str, str]:
    """{tensor: shard file} of a sharded-checkpoint index; each shard a relative path inside the
    model (no `..`, not absolute), as `pickle_io.load_sharded` demands too."""
    from bridge.hub import check_relative_path

    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise CorruptWeightsError(f"{path}: not a valid sharded-checkpoint index ({error!r:.200})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CorruptWeightsError(f"{path}: weight_map must be a non-empty object of tensor name -> shard file")
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str):
            raise CorruptWeightsError(f"{path}: weight_map[{tensor!r}] = {shard!r} is not a file name")
        problem = check_relative_path(shard)
        if problem:
            raise CorruptWeightsError(f"{path}: weight_map[{tensor!r}] = {shard!r} {problem}")
    return weight_map


def write_weights(
    arrays: Dict[str, np.ndarray],
    directory: Path,
    *,
    safe_serialization: bool = True,
    max_shard_size: Union[int, str] = "5GB",
) -> None:
    """Write `arrays` into `directory` as transformers lays them out, then remove stale weights.

    One model.safetensors (metadata {"format": "pt"}) or pytorch_model.bin (torch's zip format);
    past `max_shard_size` ("5GB", "500MB", or bytes), numbered shards plus an index. pickle_io
    writes every file under a temporary name and renames it into place. Weight files of another
    layout left from an earlier save are deleted, so the directory holds one checkpoint.
    """
    import pickle_io

    written = pickle_io.save_sharded(
        arrays, directory, max_shard_size=max_shard_size, format="safetensors" if safe_serialization else "bin"
    )
    kept = {Path(path).name for path in written}
    for path in directory.iterdir():
        if path.name not in kept and (path.name in WEIGHT_FILES or SHARD_NAME.match(path.name)):
            path.unlink()
