"""Sharded Hugging Face checkpoints, with huggingface_hub's own writer and loader as oracles,
and the `hgf inspect` / `hgf convert` commands."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from huggingface_hub import load_torch_model, save_torch_state_dict

import pickle_io
from bridge.cli import main as hgf
from tests.pickle_io_helpers import (
    assert_same_tensor,
    dtype_name,
    numpy_bytes,
    random_tensor,
    torch_bytes,
)

SAFETENSORS_DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.uint16, torch.uint32, torch.uint64,
    torch.float8_e5m2, torch.float8_e4m3fn,
]


class Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 8),
                                torch.nn.LayerNorm(8), torch.nn.Linear(8, 20))
    return model


@pytest.mark.parametrize("safe", [True, False])
def test_load_sharded_reads_huggingface_hub_layouts(tmp_path, safe):
    state = tiny_model().state_dict()
    save_torch_state_dict(state, tmp_path, max_shard_size=600, safe_serialization=safe)
    index = tmp_path / ("model.safetensors.index.json" if safe else "pytorch_model.bin.index.json")
    assert index.is_file() and len(set(json.loads(index.read_text())["weight_map"].values())) > 1
    for source in (tmp_path, index):
        for mmap in (True, False):
            loaded = pickle_io.load_sharded(source, mmap=mmap)
            assert list(sorted(loaded)) == sorted(state)
            for name, tensor in state.items():
                assert_same_tensor(loaded[name], tensor)


def test_load_sharded_single_files_prefers_safetensors(tmp_path):
    state = tiny_model().state_dict()
    torch.save({name: torch.zeros_like(t) for name, t in state.items()}, tmp_path / "pytorch_model.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(pickle_io.CheckpointError, match="no model.safetensors"):
        pickle_io.load_sharded(tmp_path / "empty")
    assert numpy_bytes(pickle_io.load_sharded(tmp_path)["1.bias"]) == bytes(32)
    save_torch_state_dict(state, tmp_path)  # adds model.safetensors
    assert_same_tensor(pickle_io.load_sharded(tmp_path)["1.bias"], state["1.bias"])


@pytest.mark.parametrize("format", ["bin", "safetensors"])
def test_save_sharded_loads_into_torch_through_huggingface_hub(tmp_path, format):
    model = tiny_model()
    state = {name: np.frombuffer(bytearray(torch_bytes(t)), np.float32).reshape(tuple(t.shape))
             for name, t in model.state_dict().items()}
    written = pickle_io.save_sharded(state, tmp_path, max_shard_size="700B", format=format)
    index_name = "model.safetensors.index.json" if format == "safetensors" else "pytorch_model.bin.index.json"
    assert written[-1].name == index_name and len(written) > 2
    index = json.loads((tmp_path / index_name).read_text())
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in state.values())
    assert sorted(index["weight_map"]) == sorted(state)
    fresh = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 8),
                                torch.nn.LayerNorm(8), torch.nn.Linear(8, 20))
    # strict=False with the key check below: huggingface_hub 1.x applies strict to each shard alone.
    result = load_torch_model(fresh, tmp_path, strict=False, safe=format == "safetensors")
    assert not result.missing_keys and not result.unexpected_keys
    for name, tensor in fresh.state_dict().items():
        assert torch_bytes(tensor) == numpy_bytes(state[name])


def test_save_sharded_single_file_and_size_parsing(tmp_path):
    state = {"a": np.ones(10, np.float32)}
    assert [p.name for p in pickle_io.save_sharded(state, tmp_path, format="safetensors")] == [
        "model.safetensors"]
    with pytest.raises(pickle_io.PickleIOError, match="bad shard size"):
        pickle_io.save_sharded(state, tmp_path, max_shard_size="lots")


def test_cli_inspect_and_scan(tmp_path, capsys):
    torch.save({"w": torch.zeros(2, 3, dtype=torch.float16), "b": torch.zeros(3)}, tmp_path / "m.bin")
    assert hgf(["inspect", str(tmp_path / "m.bin")]) == 0
    out = capsys.readouterr().out
    assert "w" in out and "float16" in out and "2x3" in out and "2 tensors, 24 bytes" in out
    assert hgf(["inspect", "--scan", str(tmp_path / "m.bin")]) == 0
    assert "no unsafe content" in capsys.readouterr().out
    (tmp_path / "evil.bin").write_bytes(pickle.dumps({"w": Payload()}, protocol=2))
    assert hgf(["inspect", "--scan", str(tmp_path / "evil.bin")]) == 1
    assert "system" in capsys.readouterr().out
    assert hgf(["inspect", str(tmp_path / "missing.bin")]) == 1


@pytest.mark.parametrize("source_kind", ["zip", "legacy", "safetensors", "sharded"])
@pytest.mark.parametrize("target", ["out.bin", "legacy.bin", "out.safetensors", "outdir"])
def test_cli_convert_any_to_any_bit_exact(tmp_path, source_kind, target):
    model = tiny_model()
    state = model.state_dict()
    source = tmp_path / "source"
    if source_kind == "zip":
        source = tmp_path / "in.bin"
        torch.save(state, source)
    elif source_kind == "legacy":
        source = tmp_path / "in.bin"
        torch.save(state, source, _use_new_zipfile_serialization=False)
    elif source_kind == "safetensors":
        (tmp_path / "st").mkdir()
        save_torch_state_dict(state, tmp_path / "st")
        source = tmp_path / "st" / "model.safetensors"
    else:
        source.mkdir()
        save_torch_state_dict(state, source, max_shard_size=600)
    output = tmp_path / target
    extra = ["--format", "legacy"] if target == "legacy.bin" else []
    extra += ["--max-shard-size", "1KB"] if target == "outdir" else []
    assert hgf(["convert", str(source), str(output)] + extra) == 0
    if target.endswith(".bin"):
        loaded = torch.load(output, weights_only=True)
    else:
        fresh = tiny_model()
        for parameter in fresh.parameters():
            torch.nn.init.zeros_(parameter)
        result = load_torch_model(fresh, output, strict=False)  # strict per shard in huggingface_hub 1.x
        assert not result.missing_keys and not result.unexpected_keys
        loaded = fresh.state_dict()
    for name, tensor in state.items():
        assert torch_bytes(loaded[name]) == torch_bytes(tensor), name


def test_cli_convert_keeps_tied_weights_once(tmp_path):
    embedding = torch.randn(20, 8)
    torch.save({"wte": embedding, "lm_head": embedding}, tmp_path / "tied.bin",
               _use_new_zipfile_serialization=False)
    assert hgf(["convert", str(tmp_path / "tied.bin"), str(tmp_path / "out.bin")]) == 0
    loaded = torch.load(tmp_path / "out.bin", weights_only=True)
    assert loaded["wte"].untyped_storage().data_ptr() == loaded["lm_head"].untyped_storage().data_ptr()
    with zipfile.ZipFile(tmp_path / "out.bin") as archive:
        assert len([name for name in archive.namelist() if "/data/" in name]) == 1


def test_safetensors_files_mapped_or_copied_match_the_package(tmp_path):
    from safetensors.torch import save_file

    tensors = {dtype_name(dtype): random_tensor(bytes(range(7, 200)), dtype, (3, 2))
               for dtype in SAFETENSORS_DTYPES}
    tensors["empty"] = torch.zeros(0, 4)
    tensors["scalar"] = torch.tensor(1.5)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    for mmap in (True, False):
        loaded = pickle_io.load_sharded(tmp_path, mmap=mmap)
        for name, tensor in tensors.items():
            assert_same_tensor(loaded[name], tensor)
            assert loaded[name].flags.writeable == (not mmap) or loaded[name].size == 0


def test_save_sharded_keeps_tied_weights_in_one_bin_shard(tmp_path):
    embedding = np.arange(200, dtype=np.float32).reshape(20, 10)
    state = {"wte": embedding, "h0": np.ones(200, np.float32), "h1": np.ones(200, np.float32),
             "lm_head": embedding}
    written = pickle_io.save_sharded(state, tmp_path, max_shard_size=900, format="bin")
    index = json.loads(written[-1].read_text())["weight_map"]
    assert index["wte"] == index["lm_head"] and len(set(index.values())) == 3
    shard = torch.load(tmp_path / index["wte"], weights_only=True)
    assert shard["wte"].untyped_storage().data_ptr() == shard["lm_head"].untyped_storage().data_ptr()
    loaded = pickle_io.load_sharded(tmp_path)
    assert sorted(loaded) == sorted(state) and np.shares_memory(loaded["wte"], loaded["lm_head"])
