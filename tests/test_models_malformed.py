"""`from_pretrained` on a generated corpus of malformed model directories (configs, shard indexes,
weights): each is refused with the BridgeError subclass it should get, naming the file and the
entry or tensor, before anything is built. docs/artifacts.md reports the corpus as counts."""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from bridge.artifacts import EntryNotFoundError
from bridge.config import BertConfig, GPT2Config
from bridge.errors import BridgeError, ConfigError
from bridge.models import BertForSequenceClassification, BertModel, GPT2Model
from bridge.models.checkpoint import CorruptWeightsError, UnsafeWeightsError, WeightsNotFoundError
from bridge.models.pretrained import CheckpointMismatchError

TINY_BERT = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=64,
)
TINY_GPT2 = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)
SHARD = "model-00001-of-00001.safetensors"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One sound directory per family, saved by our save_pretrained."""
    root = tmp_path_factory.mktemp("pristine")
    torch.manual_seed(0)
    BertModel(BertConfig(**TINY_BERT)).save_pretrained(root / "bert")
    GPT2Model(GPT2Config(**TINY_GPT2)).save_pretrained(root / "gpt2")
    return root


# --- mutations: each takes the model directory and damages it -----------------------------------


def set_entry(field, value):
    def mutate(directory):
        config = json.loads((directory / "config.json").read_text())
        config[field] = value
        (directory / "config.json").write_text(json.dumps(config))  # NaN/Infinity as Python's json writes them

    return mutate


def config_bytes(data):
    return lambda directory: (directory / "config.json").write_bytes(data)


def sharded(weight_map_change=None, index_text=None, pickle=False):
    """Turn model.safetensors into one shard plus an index, then damage the index."""

    def mutate(directory):
        tensors = load_file(directory / "model.safetensors")
        (directory / "model.safetensors").rename(directory / SHARD)
        weight_map = {name: SHARD for name in tensors}
        if weight_map_change:
            weight_map_change(weight_map)
        index = "pytorch_model.bin.index.json" if pickle else "model.safetensors.index.json"
        if pickle:
            (directory / SHARD).unlink()
        text = index_text if index_text is not None else json.dumps({"metadata": {}, "weight_map": weight_map})
        (directory / index).write_text(text)

    return mutate


def shard_path(path):
    def change(weight_map):
        weight_map[next(iter(weight_map))] = path

    return change


def weights(change):
    """Rewrite model.safetensors after `change(tensors)`."""

    def mutate(directory):
        tensors = load_file(directory / "model.safetensors")
        change(tensors)
        save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})

    return mutate


def weight_bytes(change, name="model.safetensors"):
    def mutate(directory):
        path = directory / "model.safetensors"
        data = path.read_bytes()
        path.unlink()
        (directory / name).write_bytes(change(data))

    return mutate


def drop_safetensors_for_pickle(payload):
    def mutate(directory):
        (directory / "model.safetensors").unlink()
        torch.save(payload, directory / "pytorch_model.bin")

    return mutate


class RunsCode:
    def __reduce__(self):
        return os.system, ("true",)


def truncated_pickle(directory):
    tensors = load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    torch.save({name: torch.from_numpy(array) for name, array in tensors.items()}, directory / "pytorch_model.bin")
    data = (directory / "pytorch_model.bin").read_bytes()
    (directory / "pytorch_model.bin").write_bytes(data[: len(data) // 2])


def first_tensor(tensors):
    return "embeddings.word_embeddings.weight" if "embeddings.word_embeddings.weight" in tensors else "wte.weight"


def replace_first(make):
    def change(tensors):
        name = first_tensor(tensors)
        tensors[name] = make(tensors[name])

    return change


def drop_embedding_and(field, value):
    def mutate(directory):
        weights(lambda tensors: tensors.pop(first_tensor(tensors)))(directory)
        set_entry(field, value)(directory)

    return mutate


def remove(name):
    return lambda directory: (directory / name).unlink()


def nested_json(depth):
    return ("[" * depth + "]" * depth).encode()


# --- the corpus: (family, model class, mutation, expected error, pattern the message must match) --

CONFIG = r"config\.json: "
BERT_ENTRIES = [
    ("vocab_size", -1, "must be at least 1"), ("vocab_size", 0, "at least 1"), ("vocab_size", "x", "an integer"),
    ("vocab_size", 1.5, "an integer"), ("vocab_size", True, "an integer"), ("vocab_size", None, "must be given"),
    ("vocab_size", 10**9, "parameters, but the checkpoint holds"), ("vocab_size", 10**12, "must be at most"), ("hidden_size", -32, "at least 1"), ("hidden_size", 0, "at least 1"),
    ("hidden_size", 30, "not a multiple"), ("hidden_size", "32", "an integer"), ("hidden_size", 2**40, "at most"),
    ("num_hidden_layers", -1, "at least 1"), ("num_hidden_layers", 10**5, "parameters, but the checkpoint holds"),
    ("num_hidden_layers", 10**9, "parameters, but the checkpoint holds"), ("num_hidden_layers", 2.0, "an integer"),
    ("num_attention_heads", -4, "at least 1"), ("num_attention_heads", 0, "at least 1"),
    ("num_attention_heads", 5, "not a multiple"), ("num_attention_heads", None, "must be given"),
    ("intermediate_size", -1, "at least 1"), ("intermediate_size", 10**9, "parameters, but the checkpoint holds"),
    ("max_position_embeddings", -1, "at least 1"), ("max_position_embeddings", 10**9, "parameters, but the checkpoint holds"),
    ("type_vocab_size", -1, "at least 1"), ("type_vocab_size", 10**8, "parameters, but the checkpoint holds"),
    ("layer_norm_eps", "x", "a number"), ("layer_norm_eps", -1e-12, "greater than 0"),
    ("layer_norm_eps", 0, "greater than 0"), ("layer_norm_eps", math.nan, "finite"),
    ("layer_norm_eps", math.inf, "finite"), ("hidden_dropout_prob", 1.5, "at most 1"),
    ("hidden_dropout_prob", -0.1, "at least 0"), ("hidden_dropout_prob", "a", "a number"),
    ("attention_probs_dropout_prob", 2, "at most 1"), ("classifier_dropout", "high", "a number"),
    ("hidden_act", 5, "a string"), ("initializer_range", -1, "at least 0"), ("pad_token_id", -5, "at least 0"),
    ("pad_token_id", "x", "a token id"), ("eos_token_id", [1, -2], "at least 0"),
    ("num_labels", 10**8, "must be at most 1,048,576"), ("num_labels", 2**20, "parameters, but the checkpoint holds"), ("num_labels", -1, "at least 1"), ("num_labels", "x", "an integer"),
    ("tie_word_embeddings", "yes", "true or false"), ("use_cache", 1, "true or false"),
]
GPT2_ENTRIES = [
    ("n_layer", -1, "at least 1"), ("n_layer", 10**9, "parameters, but the checkpoint holds"), ("n_head", 0, "at least 1"),
    ("n_embd", 30, "not a multiple"), ("n_positions", 10**9, "parameters, but the checkpoint holds"),
    ("layer_norm_epsilon", "x", "a number"), ("n_inner", -5, "at least 1"), ("n_inner", 10**9, "parameters, but the checkpoint holds"),
    ("resid_pdrop", 3, "at most 1"), ("summary_use_proj", "no", "true or false"),
]
CASES = {f"bert {field}={value!r:.20}": ("bert", BertModel, set_entry(field, value), ConfigError, CONFIG + ".*" + field + " = ")
         for field, value, _ in BERT_ENTRIES}
CASES.update({f"gpt2 {field}={value!r:.20}": ("gpt2", GPT2Model, set_entry(field, value), ConfigError, CONFIG + ".*" + field + " = ")
              for field, value, _ in GPT2_ENTRIES})
EXPECTED_PROBLEM = {f"bert {f}={v!r:.20}": p for f, v, p in BERT_ENTRIES}
EXPECTED_PROBLEM.update({f"gpt2 {f}={v!r:.20}": p for f, v, p in GPT2_ENTRIES})
CASES.update({
    "bert hidden_act unknown": ("bert", BertModel, set_entry("hidden_act", "nonexistent"), ConfigError,
                                CONFIG + "unsupported activation function 'nonexistent'"),
    "gpt2 activation_function unknown": ("gpt2", GPT2Model, set_entry("activation_function", "bogus"), ConfigError,
                                         CONFIG + "unsupported activation function 'bogus'"),
    "bert id2label keys not numbers": ("bert", BertModel, set_entry("id2label", {"x": "a"}), ConfigError,
                                       CONFIG + "id2label"),
    "bert id2label a list": ("bert", BertModel, set_entry("id2label", ["a", "b"]), ConfigError, CONFIG + "id2label"),
    "bert num_labels disagrees with id2label": ("bert", BertForSequenceClassification,
                                                lambda d: (set_entry("id2label", {"0": "a"})(d), set_entry("num_labels", 3)(d)),
                                                ConfigError, CONFIG + "num_labels = 3"),
    "bert model_type a number": ("bert", BertModel, set_entry("model_type", 5), ConfigError, CONFIG + "model_type"),
    "bert model_type of another family": ("bert", BertModel, set_entry("model_type", "gpt2"), ConfigError,
                                          CONFIG + ".*needs a 'bert' config"),
    "bert vocab 10^12 and the embedding missing": ("bert", BertModel, drop_embedding_and("vocab_size", 10**12),
                                                   ConfigError, CONFIG + "vocab_size = 1000000000000 must be at most"),
    "config a JSON list": ("bert", BertModel, config_bytes(b"[1, 2]"), ConfigError, CONFIG + "expected a JSON object"),
    "config truncated": ("bert", BertModel, config_bytes(b'{"model_type": "bert", "hidden_'), ConfigError,
                         CONFIG + "not valid JSON"),
    "config binary": ("bert", BertModel, config_bytes(bytes(range(256))), ConfigError, CONFIG + "not valid JSON"),
    "config UTF-16": ("bert", BertModel, config_bytes('{"model_type": "bert"}'.encode("utf-16")), ConfigError,
                      CONFIG + "not valid JSON"),
    "config empty": ("bert", BertModel, config_bytes(b""), ConfigError, CONFIG + "not valid JSON"),
    "config nested 100000 deep": ("bert", BertModel, config_bytes(nested_json(100_000)), ConfigError,
                                  CONFIG + "nested too deeply"),
    "config missing": ("bert", BertModel, remove("config.json"), EntryNotFoundError, "has no file 'config.json'"),
    # shard indexes
    "index ../x": ("bert", BertModel, sharded(shard_path("../x.safetensors")), CorruptWeightsError,
                   r"index\.json: weight_map\[.*'\.\./x\.safetensors' leaves the model directory"),
    "index sub/../../x": ("bert", BertModel, sharded(shard_path("sub/../../x.safetensors")), CorruptWeightsError,
                          "leaves the model directory"),
    "index ..": ("bert", BertModel, sharded(shard_path("..")), CorruptWeightsError, "leaves the model directory"),
    "index absolute": ("bert", BertModel, sharded(shard_path("/etc/passwd")), CorruptWeightsError,
                       r"'/etc/passwd' is an absolute path"),
    "index Windows drive": ("bert", BertModel, sharded(shard_path("C:\\x.safetensors")), CorruptWeightsError,
                            "backslash"),
    "index backslash ..": ("bert", BertModel, sharded(shard_path("..\\x.safetensors")), CorruptWeightsError,
                           "backslash"),
    "index empty name": ("bert", BertModel, sharded(shard_path("")), CorruptWeightsError, "is not a file name"),
    "index name a number": ("bert", BertModel, sharded(shard_path(5)), CorruptWeightsError, "= 5 is not a file name"),
    "index weight_map a list": ("bert", BertModel, sharded(index_text='{"weight_map": []}'), CorruptWeightsError,
                                "weight_map must be"),
    "index weight_map empty": ("bert", BertModel, sharded(index_text='{"weight_map": {}}'), CorruptWeightsError,
                               "weight_map must be"),
    "index without weight_map": ("bert", BertModel, sharded(index_text='{"metadata": {}}'), CorruptWeightsError,
                                 "not a valid sharded-checkpoint index"),
    "index not JSON": ("bert", BertModel, sharded(index_text="{nope"), CorruptWeightsError,
                       r"index\.json: not a valid sharded-checkpoint index"),
    "index nested deep": ("bert", BertModel, sharded(index_text="[" * 100_000 + "]" * 100_000), CorruptWeightsError,
                          "not a valid sharded-checkpoint index"),
    "index lists a missing shard": ("bert", BertModel, sharded(shard_path("model-00002-of-00002.safetensors")),
                                    EntryNotFoundError, "has no file 'model-00002-of-00002.safetensors'"),
    "pickle index ../x": ("bert", BertModel, sharded(shard_path("../pytorch_model.bin"), pickle=True),
                          CorruptWeightsError, r"pytorch_model\.bin\.index\.json: .*leaves the model directory"),
    "pickle index absolute": ("bert", BertModel, sharded(shard_path("/tmp/x.bin"), pickle=True), CorruptWeightsError,
                              "absolute path"),
    # weights
    "no weights": ("bert", BertModel, remove("model.safetensors"), WeightsNotFoundError, "no weights found"),
    "safetensors truncated": ("bert", BertModel, weight_bytes(lambda data: data[: len(data) // 2]),
                              CorruptWeightsError, r"model\.safetensors"),
    "safetensors header length huge": ("bert", BertModel, weight_bytes(lambda data: b"\xff" * 8 + data[8:]),
                                       CorruptWeightsError, r"model\.safetensors"),
    "safetensors empty": ("bert", BertModel, weight_bytes(lambda data: b""), CorruptWeightsError, r"model\.safetensors"),
    "safetensors is text": ("bert", BertModel, weight_bytes(lambda data: b"hello world, not weights\n"),
                            CorruptWeightsError, r"model\.safetensors"),
    "safetensors header not JSON": ("bert", BertModel,
                                    weight_bytes(lambda data: (8).to_bytes(8, "little") + b"{{{{{{{{" + data[16:]),
                                    CorruptWeightsError, r"model\.safetensors"),
    "tensor of the wrong shape": ("bert", BertModel, weights(replace_first(lambda t: t[:-1].copy())),
                                  CheckpointMismatchError, "embeddings.word_embeddings.weight: checkpoint shape"),
    "int64 tensor into a float parameter": ("bert", BertModel, weights(replace_first(lambda t: t.astype(np.int64))),
                                            CheckpointMismatchError, "word_embeddings.weight: checkpoint dtype int64"),
    "bool tensor into a float parameter": ("bert", BertModel, weights(replace_first(lambda t: t > 0)),
                                           CheckpointMismatchError, "checkpoint dtype bool"),
    "gpt2 int32 tensor": ("gpt2", GPT2Model, weights(replace_first(lambda t: t.astype(np.int32))),
                          CheckpointMismatchError, "wte.weight: checkpoint dtype int32"),
    "pickle garbage": ("bert", BertModel, weight_bytes(lambda data: b"\x80\x02garbage" * 10, "pytorch_model.bin"),
                       CorruptWeightsError, r"pytorch_model\.bin"),
    "weights under an unknown name": ("bert", BertModel, weight_bytes(lambda data: data, "pytorch_model.bin.tmp"),
                                      WeightsNotFoundError, "no weights found"),
    "pickle zip truncated": ("bert", BertModel, truncated_pickle, CorruptWeightsError, r"pytorch_model\.bin"),
    "pickle runs code": ("bert", BertModel, drop_safetensors_for_pickle({"x": RunsCode()}), UnsafeWeightsError,
                         r"pytorch_model\.bin.*system"),
    "pickle a plain list": ("bert", BertModel, drop_safetensors_for_pickle([1, 2, 3]), CorruptWeightsError,
                            r"pytorch_model\.bin"),
})


@pytest.mark.parametrize("case", CASES)
def test_malformed_model_directory_is_refused_naming_the_problem(pristine, tmp_path, case):
    family, model_class, mutate, expected, pattern = CASES[case]
    directory = tmp_path / "model"
    shutil.copytree(pristine / family, directory)
    mutate(directory)
    with pytest.raises(BridgeError) as raised:
        model_class.from_pretrained(directory)
    error = raised.value
    assert type(error) is expected, f"{type(error).__name__}: {error}"
    assert "\n" not in str(error)
    assert __import__("re").search(pattern, str(error)), str(error)
    if case in EXPECTED_PROBLEM:
        assert EXPECTED_PROBLEM[case] in str(error), str(error)


def test_corpus_is_large_enough():
    assert len(CASES) >= 60


def test_pristine_directories_load(pristine):
    """The corpus's starting points are sound: only the damage makes them fail."""
    assert BertModel.from_pretrained(pristine / "bert").config.hidden_size == 32
    assert GPT2Model.from_pretrained(pristine / "gpt2").config.n_embd == 32
    directory = pristine.parent / "sharded-ok"
    shutil.copytree(pristine / "bert", directory)
    sharded()(directory)
    assert BertModel.from_pretrained(directory).config.num_hidden_layers == 2


def test_config_built_in_code_is_validated_too():
    with pytest.raises(ConfigError, match="num_attention_heads = -2 must be at least 1"):
        BertModel(BertConfig(**{**TINY_BERT, "num_attention_heads": -2}))
    with pytest.raises(ConfigError, match="n_layer = 'x' must be an integer"):
        GPT2Model(GPT2Config(**{**TINY_GPT2, "n_layer": "x"}))
