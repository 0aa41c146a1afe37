"""`hgf(spec)`: spec parsing, config lookups, errors, and dispatch to tokenizer and model loaders."""

import json
import subprocess
import sys

import pytest

import bridge
from bridge.config import BertConfig, GPT2Config, PretrainedConfig
from bridge.errors import SpecError
from bridge.hgf import ITEMS, TASKS, Spec, hgf, parse_spec

BERT_CONFIG = {"model_type": "bert", "vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("bert-base-cased:config", Spec("bert-base-cased", None, "config")),
        ("google-bert/bert-base-cased:Config", Spec("google-bert/bert-base-cased", None, "config")),
        ("org/model@v1.0:FORMASKEDLM", Spec("org/model", "v1.0", "formaskedlm")),
        ("org/model@refs/pr/1:tokenizer", Spec("org/model", "refs/pr/1", "tokenizer")),
        ("org/model@" + "a" * 40, Spec("org/model", "a" * 40, None)),
        ("gpt2", Spec("gpt2", None, None)),
        ("  gpt2:lmheadmodel ", Spec("gpt2", None, "lmheadmodel")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_parse_local_directory(tmp_path):
    assert parse_spec(f"{tmp_path}:config") == Spec(str(tmp_path), None, "config")
    assert parse_spec(str(tmp_path)) == Spec(str(tmp_path), None, None)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty hgf spec"),
        ("org/model:", "has item ''; expected one of config, tokenizer, model, forpretraining"),
        ("org/model:bogus", "unknown item 'bogus'; expected one of config, tokenizer, model, forpretraining"),
        ("org/model@:config", "empty revision after '@'"),
        ("a/b/c:config", "'a/b/c' is neither a local directory nor a Hub repo id"),
        ("org/bad--name:config", "neither a local directory nor a Hub repo id"),
        ("./no/such/dir:config", "local directory './no/such/dir' does not exist"),
    ],
)
def test_malformed_specs_name_the_problem(spec, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        parse_spec(spec)


def test_unknown_item_lists_every_valid_item():
    with pytest.raises(SpecError) as error:
        hgf("org/model:forimagination")
    for item in ITEMS:
        assert item in str(error.value)


def test_config_from_hub(hub_server):
    hub_server.add_file("org/tiny-bert", "config.json", json.dumps(BERT_CONFIG).encode())
    config = hgf("org/tiny-bert:config")
    assert isinstance(config, BertConfig)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (99, 32, 2)
    assert repr(config).startswith("BertConfig with 4 entries: ")
    assert bridge.hgf("org/tiny-bert:CONFIG") == config  # the package-level entry point, case-insensitive


def test_config_of_pinned_revision_and_generic_type(hub_server):
    hub_server.add_file("org/m", "config.json", json.dumps(BERT_CONFIG).encode())
    hub_server.add_file("org/m", "config.json", b'{"model_type": "gpt2", "n_embd": 64}', revision="v2")
    hub_server.add_file("org/other", "config.json", b'{"model_type": "t5", "d_model": 8}')
    gpt2 = hgf("org/m@v2:config")
    assert isinstance(gpt2, GPT2Config) and gpt2.hidden_size == 64
    t5 = hgf("org/other:config")
    assert type(t5) is PretrainedConfig and t5.model_type == "t5" and t5.d_model == 8


def test_config_agrees_with_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text(json.dumps(BERT_CONFIG))
    ours = hgf(f"{tmp_path}:config")
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "layer_norm_eps",
                "hidden_act", "max_position_embeddings", "type_vocab_size"):
        assert getattr(ours, key) == getattr(theirs, key), key


def test_missing_repo_and_missing_config(hub_server):
    from bridge.artifacts import EntryNotFoundError, RepoNotFoundError

    hub_server.add_repo("org/empty")
    with pytest.raises(RepoNotFoundError, match="'org/absent' not found"):
        hgf("org/absent:config")
    with pytest.raises(EntryNotFoundError, match="'org/empty' has no file 'config.json'"):
        hgf("org/empty:config")


def test_tokenizer_dispatch(monkeypatch, tmp_path):
    import bridge.tokenizer

    calls = []
    monkeypatch.setattr(bridge.tokenizer, "load_tokenizer", lambda source, revision=None: calls.append((source, revision)) or "tok")
    assert hgf("org/model@dev:Tokenizer") == "tok"
    assert calls == [("org/model", "dev")]


class FakeModel:
    calls = []

    @classmethod
    def from_pretrained(cls, source, revision=None, **kwargs):
        cls.calls.append((cls.__name__, source, revision, kwargs))
        return cls()


class FakeBertModel(FakeModel):
    pass


class FakeBertForMaskedLM(FakeModel):
    pass


def test_model_and_task_dispatch(monkeypatch, tmp_path):
    import bridge.models
    import bridge.tokenizer

    (tmp_path / "config.json").write_text(json.dumps(BERT_CONFIG))
    asked = []

    def get_model_type(model_type):
        asked.append(model_type)
        return {"model": FakeBertModel, "formaskedlm": FakeBertForMaskedLM}

    monkeypatch.setattr(bridge.models, "get_model_type", get_model_type)
    monkeypatch.setattr(bridge.tokenizer, "load_tokenizer", lambda source, revision=None: ("tok", source))
    FakeModel.calls.clear()

    assert isinstance(hgf(f"{tmp_path}:ForMaskedLM", torch_dtype="bfloat16"), FakeBertForMaskedLM)
    assert isinstance(hgf(f"{tmp_path}:model"), FakeBertModel)
    tokenizer, model = hgf(str(tmp_path))
    assert tokenizer == ("tok", str(tmp_path)) and isinstance(model, FakeBertModel)
    assert asked == ["bert", "bert", "bert"]
    assert FakeModel.calls[0] == ("FakeBertForMaskedLM", str(tmp_path), None, {"torch_dtype": "bfloat16"})
    with pytest.raises(SpecError, match="model type 'bert' .* has no task 'lmheadmodel'; expected one of formaskedlm, model"):
        hgf(f"{tmp_path}:lmheadmodel")


def test_tasks_follow_the_models_contract():
    # The task names of the contract: class name minus the family prefix, lowercased.
    assert "formaskedlm" in TASKS and "lmheadmodel" in TASKS and "model" not in TASKS


def test_importing_hgf_does_not_import_torch():
    code = "import sys, bridge.hgf, bridge.hub, bridge.artifacts; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_end_to_end_masked_lm_from_hub_then_offline(hub_server, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    reference = transformers.BertForMaskedLM(
        transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32)
    ).eval()
    reference.save_pretrained(tmp_path / "saved")
    for path in (tmp_path / "saved").iterdir():
        hub_server.add_file("org/tiny-mlm", path.name, path.read_bytes())

    ours = hgf("org/tiny-mlm:formaskedlm")
    assert type(ours).__name__ == "BertForMaskedLM"
    hub_server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = hgf("org/tiny-mlm:ForMaskedLM")  # offline: every file from the artifact store
    input_ids = torch.tensor([[2, 7, 11, 3]])
    with torch.no_grad():
        expected = reference(input_ids).logits
        for model in (ours, again):
            output = model(input_ids)
            logits = output.logits if hasattr(output, "logits") else output[0]
            torch.testing.assert_close(torch.as_tensor(logits), expected, rtol=1e-5, atol=1e-5)
