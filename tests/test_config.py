"""bridge.config against transformers' own config classes (the oracle)."""

import json

import pytest
import transformers

from bridge.config import BertConfig, GPT2Config, PretrainedConfig, RobertaConfig, load_config
from bridge.errors import ConfigError

PAIRS = [
    (BertConfig, transformers.BertConfig),
    (GPT2Config, transformers.GPT2Config),
    (RobertaConfig, transformers.RobertaConfig),
]


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=lambda c: c.__name__)
def test_defaults_match_transformers(ours, theirs):
    expected = theirs().to_dict()
    for key, value in ours().to_dict().items():
        if key in expected:
            assert value == expected[key], key


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=lambda c: c.__name__)
def test_round_trip_through_transformers(tmp_path, ours, theirs):
    ours(vocab_size=99, hidden_size=64, num_labels=3).save_pretrained(tmp_path)
    loaded = theirs.from_pretrained(tmp_path)
    assert (loaded.vocab_size, loaded.hidden_size, loaded.num_labels) == (99, 64, 3)
    loaded.save_pretrained(tmp_path)
    back = load_config(tmp_path)
    assert type(back) is ours
    assert (back.vocab_size, back.hidden_size, back.num_labels) == (99, 64, 3)


def test_gpt2_aliases_read_and_write_the_same_entry():
    config = GPT2Config(hidden_size=32)
    assert config.n_embd == 32
    config.num_hidden_layers = 3
    assert config.n_layer == 3 and config.to_dict()["n_layer"] == 3


def test_unknown_model_type_gives_generic_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 512}))
    config = load_config(tmp_path)
    assert type(config) is PretrainedConfig
    assert config.model_type == "t5" and config.d_model == 512


def test_repr_lists_entries():
    text = repr(BertConfig(vocab_size=28996, hidden_size=768))
    assert text.startswith("BertConfig with 3 entries: vocab_size=28996, hidden_size=768")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_malformed_config_names_file(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ConfigError, match="config.json"):
        load_config(tmp_path)


def test_missing_config_names_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path)


def test_config_json_leaves_out_unchanged_common_defaults(tmp_path):
    GPT2Config(vocab_size=10, n_embd=128).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["n_embd"] == 128 and written["n_layer"] == 12  # family entries always written
    assert "output_attentions" not in written and "id2label" not in written
    theirs = transformers.GPT2Config.from_pretrained(tmp_path)
    assert (theirs.n_embd, theirs.num_labels, theirs.output_attentions) == (128, 2, False)


def test_config_json_gets_the_usual_file_mode(tmp_path):
    """Written atomically, yet readable by others as any file the user creates (umask applies)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        BertConfig().save_pretrained(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left
