"""bridge.checkpoint_keys settled against transformers: crafted checkpoints, loaded by both.

Each case writes a state dict whose keys are renamed or re-prefixed, loads it with transformers'
`from_pretrained(output_loading_info=True)`, and requires our rule to give the same missing and
unexpected keys and to fill every parameter from the same tensor. Then the two users of the rule
(our torch models and the Flux tables) are shown to agree on one such checkpoint.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file

from bridge import checkpoint_keys, flux_layout
from bridge.config import load_config


def tiny(cls, family, **overrides):
    if family == "bert":
        config = transformers.BertConfig(
            vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
            max_position_embeddings=16, **overrides,
        )
    else:
        config = transformers.LlamaConfig(
            vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=12,
            max_position_embeddings=16, **overrides,
        )
    torch.manual_seed(0)
    return cls(config)


def distinct_state(model):
    """Every tensor different, so that a mix-up shows."""
    return {key: torch.full_like(value, float(i + 1)) for i, (key, value) in enumerate(model.state_dict().items())}


def relabel(state, rename):
    return {rename(key): value for key, value in state.items()}


def strip(prefix):
    return lambda key: key[len(prefix) :] if key.startswith(prefix) else key


def legacy(key):
    return key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


BERT_BASE = (transformers.BertModel, "bert")
BERT_HEAD = (transformers.BertForSequenceClassification, "bert")
CASES = {
    # name: (model the file comes from, model that loads it, key rewrite, extra keys)
    "base into head": (BERT_BASE, BERT_HEAD, None, {}),
    "head into base": (BERT_HEAD, BERT_BASE, None, {}),
    "head, prefix stripped from half the keys": (
        BERT_HEAD, BERT_HEAD, lambda k: strip("bert.")(k) if "layer.0" in k else k, {},
    ),
    "legacy gamma/beta, and a gamma that is not a LayerNorm's": (
        BERT_HEAD, BERT_HEAD, legacy, {"bert.encoder.scale.gamma": torch.ones(2)},
    ),
    "legacy names in a base checkpoint loaded into a head": (BERT_BASE, BERT_HEAD, legacy, {}),
    "llama head into base": (
        (transformers.LlamaForCausalLM, "llama"), (transformers.LlamaModel, "llama"), None, {},
    ),
    "llama base into question answering (prefix transformer.)": (
        (transformers.LlamaModel, "llama"), (transformers.LlamaForQuestionAnswering, "llama"), None, {},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_matches_transformers(case, tmp_path):
    (source_cls, family), (target_cls, _), rewrite, extra = CASES[case]
    source = tiny(source_cls, family)
    state = distinct_state(source)
    if rewrite:
        state = relabel(state, rewrite)
    state.update(extra)
    target = tiny(target_cls, family)
    target.config.save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors", metadata={"format": "pt"})

    transformers.logging.set_verbosity_error()
    loaded, info = target_cls.from_pretrained(tmp_path, output_loading_info=True)
    model_keys = list(loaded.state_dict())
    match = checkpoint_keys.match_keys(state, model_keys, target_cls.base_model_prefix)
    assert sorted(match.unused) == sorted(info["unexpected_keys"])
    assert sorted(match.missing(model_keys)) == sorted(info["missing_keys"])
    for model_key, file_key in match.mapping.items():
        assert torch.equal(loaded.state_dict()[model_key], state[file_key]), (model_key, file_key)


def test_rule_details():
    known = ["bert.x.weight", "y.weight"]
    assert checkpoint_keys.with_prefix_rule("x.weight", dict.fromkeys(known), "bert") == "bert.x.weight"
    assert checkpoint_keys.with_prefix_rule("bert.y.weight", dict.fromkeys(known), "bert") == "y.weight"
    assert checkpoint_keys.with_prefix_rule("bert.z", dict.fromkeys(known), "bert") == "bert.z"
    assert checkpoint_keys.renamed("a.LayerNorm.gamma") == "a.LayerNorm.weight"
    assert checkpoint_keys.renamed("a.norm.gamma") == "a.norm.gamma"
    # A tied copy fills its source only when the source is absent; ignored buffers vanish silently.
    tied = {"lm_head.weight": "model.embed_tokens.weight"}
    only_copy = checkpoint_keys.match_keys(["lm_head.weight"], ["model.embed_tokens.weight"], "model", tied=tied)
    assert only_copy.mapping == {"model.embed_tokens.weight": "lm_head.weight"} and not only_copy.unused
    both = checkpoint_keys.match_keys(
        ["lm_head.weight", "model.embed_tokens.weight", "model.layers.0.self_attn.rotary_emb.inv_freq"],
        ["model.embed_tokens.weight"],
        "model",
        tied=tied,
        ignored=checkpoint_keys.IGNORED_KEYS["llama"],
    )
    assert both.mapping == {"model.embed_tokens.weight": "model.embed_tokens.weight"} and not both.unused


def test_torch_models_and_flux_tables_match_alike(tmp_path):
    from bridge.models import BertForSequenceClassification

    source = tiny(transformers.BertModel, "bert")
    state = relabel({k: v.numpy() for k, v in distinct_state(source).items()}, legacy)
    state["pooler.extra"] = np.zeros(2, np.float32)
    target = tiny(transformers.BertForSequenceClassification, "bert")
    target.config.save_pretrained(tmp_path)
    config = load_config(tmp_path)
    with pytest.warns(UserWarning) as caught:
        ours = BertForSequenceClassification.from_state_dict(config, state)
    torch_messages = " ".join(str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as flux_caught:
        warnings.simplefilter("always")
        weights = {w.key: w for w in flux_layout.flux_weights(state, config, "forsequenceclassification")}
    flux_messages = " ".join(str(w.message) for w in flux_caught)
    for messages in (torch_messages, flux_messages):
        assert "pooler.extra" in messages and "classifier.weight" in messages
    for key, value in ours.state_dict().items():
        if key in weights:
            assert np.array_equal(flux_layout.from_flux_array(weights[key].array, _transform(config, key)), value.numpy())
    assert set(weights) == set(ours.state_dict()) - {"classifier.weight", "classifier.bias"}


def _transform(config, key):
    return next(e.transform for e in flux_layout.flux_table(config, "forsequenceclassification") if e.key == key)
