"""Hugging Face checkpoint directories: one file, or shards listed by an `*.index.json`.

An index is `{"metadata": {"total_size": N}, "weight_map": {tensor name: shard file}}`; shards are
named `model-00001-of-00003.safetensors` or `pytorch_model-00001-of-00003.bin`. A checkpoint that
fits one shard is written as a single `model.safetensors` / `pytorch_model.bin`, as transformers does.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import numpy as np

from pickle_io import checkpoint, safetensors_io
from pickle_io.atomic_file import replacing
from pickle_io.errors import CheckpointError, PickleIOError
from pickle_io.storage_plan import byte_span
from pickle_io.zipformat import is_safe_entry_name

PathLike = Union[str, os.PathLike]
# Where a checkpoint directory's tensors are, in order of preference.
SEARCH_ORDER = ("model.safetensors.index.json", "model.safetensors",
                "pytorch_model.bin.index.json", "pytorch_model.bin")
_SHARD_STEMS = {"safetensors": ("model", ".safetensors"), "bin": ("pytorch_model", ".bin")}
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: Union[int, str]) -> int:
    """Bytes in "5GB" (10^9 units) or "5GiB" (2^30 units), as transformers reads them."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(size))
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise PickleIOError(f"bad shard size {size!r}; use e.g. 5GB, 500MB or 2GiB")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _state_dict_of(obj: Any, path: Path) -> Dict[str, np.ndarray]:
    if not isinstance(obj, Mapping) or not all(
            isinstance(name, str) and isinstance(value, np.ndarray) for name, value in obj.items()):
        raise CheckpointError(f"{path}: not a state dict of {{name: tensor}}")
    return dict(obj)


def _load_file(path: Path, mmap: bool, writable: bool) -> Dict[str, np.ndarray]:
    return _state_dict_of(checkpoint.load(path, mmap=mmap, writable=writable), path)


def _read_weight_map(index_path: Path) -> Dict[str, str]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{index_path}: not a valid index ({error})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(
            isinstance(name, str) and isinstance(shard, str) for name, shard in weight_map.items()):
        raise CheckpointError(f"{index_path}: no weight_map of {{tensor name: shard file}}")
    for shard in weight_map.values():
        if not is_safe_entry_name(shard):
            raise CheckpointError(f"{index_path}: unsafe shard file name {shard!r}")
    return weight_map


def resolve_checkpoint(dir_or_index: PathLike) -> Path:
    """The file a checkpoint path stands for: itself (a checkpoint file or an `*.index.json`), or
    for a directory its index or single file, safetensors preferred, as transformers does."""
    path = Path(dir_or_index)
    if path.is_dir():
        for name in SEARCH_ORDER:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no {', '.join(SEARCH_ORDER)} in this directory")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def checkpoint_files(dir_or_index: PathLike) -> List[Path]:
    """Every file holding tensors of a checkpoint: its shards in index order, or the one file."""
    path = resolve_checkpoint(dir_or_index)
    if not path.name.endswith(".json"):
        return [path]
    return [path.parent / shard for shard in dict.fromkeys(_read_weight_map(path).values())]


def load_sharded(dir_or_index: PathLike, *, mmap: bool = True,
                 writable: bool = False) -> Dict[str, np.ndarray]:
    """{name: array} of a Hugging Face checkpoint: an `*.index.json` path, a directory holding
    one, or a directory holding a single model.safetensors or pytorch_model.bin (safetensors
    preferred). A single checkpoint file is accepted too. Only the tensors an index lists are
    returned; a missing shard or tensor is a CheckpointError."""
    path = resolve_checkpoint(dir_or_index)
    if not path.name.endswith(".json"):
        return _load_file(path, mmap, writable)
    weight_map = _read_weight_map(path)
    shards: Dict[str, Dict[str, np.ndarray]] = {}
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise CheckpointError(f"{path}: shard {shard} is missing")
        shards[shard] = _load_file(shard_path, mmap, writable)
    result = {}
    for name, shard in weight_map.items():
        if name not in shards[shard]:
            raise CheckpointError(f"{path}: tensor {name} is not in shard {shard}")
        result[name] = shards[shard][name]
    return result


def _split(state_dict: Mapping[str, np.ndarray], limit: int) -> List[Dict[str, np.ndarray]]:
    """Consecutive shards of at most `limit` bytes (a bigger tensor gets a shard of its own).

    Arrays over exactly the same memory (tied weights, a weight and its transpose) go to the
    shard of the first of them and count once, so a .bin shard stores that memory once."""
    shards: List[Dict[str, np.ndarray]] = [{}]
    shard_of_memory: Dict[Tuple[int, int], int] = {}
    size = 0
    for name, array in state_dict.items():
        memory = byte_span(array) if array.size else (id(array), 0)
        if memory in shard_of_memory:
            shards[shard_of_memory[memory]][name] = array
            continue
        if shards[-1] and size + array.nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = array
        shard_of_memory[memory] = len(shards) - 1
        size += array.nbytes
    return shards


def save_sharded(state_dict: Mapping[str, np.ndarray], directory: PathLike, *,
                 max_shard_size: Union[int, str] = "5GB", format: str = "bin") -> List[Path]:  # noqa: A002
    """Write a state dict as Hugging Face does: one file when it fits `max_shard_size`, else
    numbered shards plus an `*.index.json`. Returns the files written. format "bin" writes torch
    zip files (tied weights stored once per shard), "safetensors" writes safetensors."""
    if format not in _SHARD_STEMS:
        raise PickleIOError(f"unknown shard format {format!r}; use 'bin' or 'safetensors'")
    directory = Path(directory)
    _state_dict_of(state_dict, directory)
    directory.mkdir(parents=True, exist_ok=True)
    shards = _split(state_dict, parse_size(max_shard_size))
    stem, suffix = _SHARD_STEMS[format]
    if len(shards) == 1:
        names = [stem + suffix]
    else:
        names = [f"{stem}-{i:05d}-of-{len(shards):05d}{suffix}" for i in range(1, len(shards) + 1)]
    written: List[Path] = []
    try:
        for name, shard in zip(names, shards):
            target = directory / name
            if format == "safetensors":
                safetensors_io.write_safetensors(shard, target)
            else:
                checkpoint.save(collections.OrderedDict(shard), target)
            written.append(target)
        if len(shards) > 1:
            index = {
                "metadata": {"total_size": sum(array.nbytes for array in state_dict.values())},
                "weight_map": {name: file for file, shard in zip(names, shards) for name in shard},
            }
            index_path = directory / (stem + suffix + ".index.json")
            with replacing(index_path) as temporary:
                temporary.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
            written.append(index_path)
    except BaseException:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        raise
    return written
