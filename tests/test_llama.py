"""bridge.models.llama against transformers: every class of Llama, Mistral and Qwen2, same weights.

Tiny random configs cover grouped-query attention, head_dim != hidden / heads, every RoPE type,
sliding windows shorter than the input, tied and untied embeddings, biases, padding masks, labels
and losses, gradients, cached decoding and generation (greedy on left-padded batches), and
checkpoints both ways through files, in fp32, bf16 and fp16.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

from bridge import models
from bridge.config import CONFIG_CLASSES, LlamaConfig, load_config
from bridge.hgf import hgf
from bridge.models import generation

VOCAB, BATCH, SEQ, PAD = 48, 2, 9, 0
FAMILIES = ("llama", "mistral", "qwen2")
PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}
HEADS = ("Model", "ForCausalLM", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")

ROPE = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
    "llama3": {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 4,
    },
    "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 8},
}


def sizes(family: str, **overrides) -> dict:
    entries = dict(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8, pad_token_id=PAD, bos_token_id=1, eos_token_id=2,
        num_labels=3, rms_norm_eps=1e-5,
    )
    if family != "qwen2":
        entries["head_dim"] = 6  # not hidden / heads
    if family == "llama":
        entries.update(attention_bias=True, mlp_bias=True)
    if family == "mistral":
        entries["sliding_window"] = 4  # shorter than SEQ
    if family == "qwen2":
        entries.update(use_sliding_window=True, sliding_window=3, max_window_layers=1)
    entries.update(overrides)
    return entries


def pair(family: str, head: str, **overrides):
    """transformers' model and ours, same random (non-trivial) weights, eval mode."""
    entries = sizes(family, **overrides)
    theirs_config = transformers.AutoConfig.for_model(family, **entries)
    theirs_config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    theirs = getattr(transformers, PREFIX[family] + head)(theirs_config).eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    ours_config = CONFIG_CLASSES[family].from_dict(theirs_config.to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every key must match
        ours = getattr(models, PREFIX[family] + head).from_state_dict(ours_config, theirs.state_dict())
    return theirs, ours


def batch(left_padding: bool = True):
    ids = torch.randint(3, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    padded = slice(0, 3) if left_padding else slice(SEQ - 3, SEQ)
    ids[1, padded], mask[1, padded] = PAD, 0
    return ids, mask


def close(a, b, atol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("head", HEADS)
def test_every_class_matches_transformers(family, head):
    theirs, ours = pair(family, head)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ids, mask = batch()
    kwargs = dict(input_ids=ids, attention_mask=mask)
    if head == "ForCausalLM":
        kwargs["labels"] = ids.masked_fill(mask == 0, -100)
    if head == "ForTokenClassification":
        kwargs["labels"] = (ids % 3).masked_fill(mask == 0, -100)
    if head == "ForSequenceClassification":
        kwargs["labels"] = torch.tensor([0, 2])
    if head == "ForQuestionAnswering":
        kwargs.update(start_positions=torch.tensor([1, 4]), end_positions=torch.tensor([3, 20]))
    with torch.no_grad():
        expected, got = theirs(**kwargs), ours(**kwargs)
    real = mask.bool()
    for name in ("last_hidden_state", "logits", "start_logits", "end_logits", "loss"):
        if getattr(expected, name, None) is not None:
            e, g = getattr(expected, name), getattr(got, name)
            if name != "loss" and e.dim() >= 2 and e.shape[:2] == (BATCH, SEQ):
                e, g = e[real], g[real]  # padded queries attend to nothing: undefined on both sides
            close(g, e)


@pytest.mark.parametrize("rope", sorted(ROPE))
def test_rope_types(rope):
    # SEQ > max_position_embeddings (8 > 9 for the longer input): dynamic NTK rescales
    theirs, ours = pair("llama", "ForCausalLM", rope_parameters=dict(ROPE[rope]))
    ids = torch.randint(3, VOCAB, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        close(ours(ids).logits, theirs(ids).logits)
        short = ids[:, :5]
        close(ours(short).logits, theirs(short).logits)


def test_legacy_rope_spellings_fold_into_rope_parameters():
    entries = sizes("llama")
    entries.update(rope_theta=5e5, rope_scaling={"type": "linear", "factor": 2.0})
    ours, theirs = LlamaConfig.from_dict(dict(entries)), transformers.LlamaConfig.from_dict(dict(entries))
    assert ours.rope_parameters == theirs.rope_parameters
    assert "rope_theta" not in ours.to_dict() and "rope_scaling" not in ours.to_dict()
    default = LlamaConfig().to_dict()
    theirs_default = transformers.LlamaConfig().to_dict()
    for key in ("rope_parameters", "head_dim", "num_key_value_heads", "tie_word_embeddings", "rms_norm_eps"):
        assert default[key] == theirs_default[key], key
    assert CONFIG_CLASSES["qwen2"]().sliding_window is None  # only with use_sliding_window
    assert CONFIG_CLASSES["mistral"]().sliding_window == 4096


@pytest.mark.parametrize("family", FAMILIES)
def test_hidden_states_attentions_and_cache_fields(family):
    theirs, ours = pair(family, "Model")
    ids, mask = batch(left_padding=False)
    with torch.no_grad():
        expected = theirs(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, use_cache=True)
        got = ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, use_cache=True)
    # Padded queries may see no key at all (Qwen2's window of 3 over the padding): undefined outputs.
    real = mask.bool()
    assert len(got.hidden_states) == len(expected.hidden_states) == 3
    for g, e in zip(got.hidden_states, expected.hidden_states):
        close(g[real], e[real])
    for g, e in zip(got.attentions, expected.attentions):
        close(g.transpose(1, 2)[real], e.transpose(1, 2)[real])
    for layer, (key, value) in enumerate(got.cache):
        # transformers' cache keeps only a sliding-window layer's last window - 1 tokens; ours keeps all
        their_keys, their_values = expected.cache.layers[layer].keys, expected.cache.layers[layer].values
        kept = their_keys.shape[2]
        close(key[:, :, -kept:], their_keys)
        close(value[:, :, -kept:], their_values)


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_decoding_equals_one_pass(family):
    _, ours = pair(family, "ForCausalLM")
    ids, mask = batch()
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        first = ours(ids[:, :5], attention_mask=mask[:, :5], use_cache=True)
        cache, steps = first.cache, [first.logits]
        for t in range(5, SEQ):
            out = ours(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
        with pytest.warns(FutureWarning, match="past_key_values"):
            ours(ids[:, :1], past_key_values=first.cache)
    close(torch.cat(steps, dim=1)[mask.bool()], full[mask.bool()])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tied", [True, False])
def test_greedy_generation_on_left_padded_batches(family, tied):
    theirs, ours = pair(family, "ForCausalLM", tie_word_embeddings=tied)
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == tied
    ids, mask = batch()
    expected = theirs.generate(
        ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=PAD, eos_token_id=[2, 5]
    )
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=6, eos_token_id=[2, 5])
    assert got.tolist() == expected.tolist()
    penalised = dict(max_new_tokens=6, repetition_penalty=1.5, pad_token_id=PAD)
    assert ours.generate(ids, attention_mask=mask, **penalised).tolist() == theirs.generate(
        ids, attention_mask=mask, do_sample=False, **penalised
    ).tolist()


def test_sampling_filters_match_transformers_warpers():
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(3))
    sequences = torch.randint(0, 50, (3, 7), generator=torch.Generator().manual_seed(4))
    expected = RepetitionPenaltyLogitsProcessor(1.3)(sequences, scores.clone())
    close(generation.apply_repetition_penalty(scores, sequences, 1.3), expected, atol=0)
    padding = torch.tensor([0, 2, 5])  # left padding is not a repetition
    expected = RepetitionPenaltyLogitsProcessor(1.3, prompt_ignore_length=padding)(sequences, scores.clone())
    close(generation.apply_repetition_penalty(scores, sequences, 1.3, padding), expected, atol=0)
    expected = TopPLogitsWarper(0.8)(sequences, TopKLogitsWarper(10)(sequences, TemperatureLogitsWarper(0.7)(sequences, scores)))
    close(generation.filter_scores(scores, 0.7, 10, 0.8), expected, atol=0)
    # Sampling draws only tokens that survive the filters, reproducibly with a generator.
    _, ours = pair("llama", "ForCausalLM")
    ids, mask = batch()
    settings = dict(max_new_tokens=5, do_sample=True, top_k=3, top_p=0.9, temperature=0.8, attention_mask=mask)
    first = ours.generate(ids, generator=torch.Generator().manual_seed(5), **settings)
    again = ours.generate(ids, generator=torch.Generator().manual_seed(5), **settings)
    assert first.tolist() == again.tolist() and first.shape[1] <= SEQ + 5
    with pytest.raises(ValueError, match="top_p"):
        ours.generate(ids, top_p=1.5)


def test_gradients_match_transformers():
    theirs, ours = pair("qwen2", "ForCausalLM")
    theirs.train(), ours.train()
    for model in (theirs, ours):  # dropout is 0 in these configs: train mode is deterministic
        model.zero_grad()
    ids, mask = batch()
    labels = ids.masked_fill(mask == 0, -100)
    theirs(ids, attention_mask=mask, labels=labels).loss.backward()
    ours(ids, attention_mask=mask, labels=labels).loss.backward()
    their_grads = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        close(parameter.grad, their_grads[name].grad, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("safe", [True, False])
def test_half_precision_checkpoints_both_ways(dtype, safe, tmp_path):
    theirs, _ = pair("mistral", "ForCausalLM")
    theirs = theirs.to(dtype)
    theirs.save_pretrained(tmp_path / "theirs", safe_serialization=safe)
    ours = models.MistralForCausalLM.from_pretrained(tmp_path / "theirs")
    assert ours.dtype == dtype
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    ids, mask = batch()
    theirs_loaded = transformers.MistralForCausalLM.from_pretrained(tmp_path / "theirs")  # RoPE frequencies in fp32, as ours
    with torch.no_grad():
        expected = theirs_loaded(ids, attention_mask=mask).logits[mask.bool()]
        got = ours(ids, attention_mask=mask).logits[mask.bool()]
    assert got.dtype == expected.dtype == dtype
    close(got.float(), expected.float(), atol=1e-2)
    # ours -> files -> transformers: bit-exact, same dtype, nothing missing
    ours.save_pretrained(tmp_path / "ours", safe_serialization=safe)
    reloaded, info = transformers.MistralForCausalLM.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    for key, value in reloaded.state_dict().items():
        assert value.dtype == dtype and torch.equal(value, theirs.state_dict()[key]), key


@pytest.mark.parametrize("family", FAMILIES)
def test_hgf_lookups_and_model_types(family, tmp_path):
    theirs, _ = pair(family, "ForCausalLM")
    theirs.save_pretrained(tmp_path)
    assert load_config(tmp_path).model_type == family
    assert type(hgf(f"{tmp_path}:config")).__name__ == theirs.config.__class__.__name__
    model = hgf(f"{tmp_path}:forcausallm")
    assert type(model).__name__ == PREFIX[family] + "ForCausalLM"
    # The head's checkpoint serves every other class (base model prefix added or stripped).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for head in ("model", "forsequenceclassification", "fortokenclassification", "forquestionanswering"):
            assert type(hgf(f"{tmp_path}:{head}")) is models.get_model_type(family)[head]
    base = hgf(f"{tmp_path}:model")
    assert torch.equal(base.embed_tokens.weight, theirs.model.embed_tokens.weight)


def test_gpt2_generate_shares_the_loop_and_matches_transformers():
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, n_positions=32, pad_token_id=PAD)
    torch.manual_seed(0)
    theirs = transformers.GPT2LMHeadModel(config).eval()
    ours = models.GPT2LMHeadModel.from_state_dict(CONFIG_CLASSES["gpt2"].from_dict(config.to_dict()), theirs.state_dict())
    ids, mask = batch()
    for settings in (dict(max_new_tokens=6), dict(max_new_tokens=6, repetition_penalty=1.4, eos_token_id=[7, 9])):
        expected = theirs.generate(ids, attention_mask=mask, do_sample=False, pad_token_id=PAD, **settings)
        assert ours.generate(ids, attention_mask=mask, **settings).tolist() == expected.tolist()
    sampled = dict(max_new_tokens=4, do_sample=True, top_p=0.5, attention_mask=mask)
    first = ours.generate(ids, generator=torch.Generator().manual_seed(6), **sampled)
    assert first.tolist() == ours.generate(ids, generator=torch.Generator().manual_seed(6), **sampled).tolist()


MEMORY_PROBE = r"""
import sys, torch
from bridge.models import LlamaForCausalLM
def rss(field):
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field + ":")).split()[1]) * 1024
warm_up = LlamaForCausalLM.from_pretrained(sys.argv[2])  # a tiny model first: lazy imports and
with torch.inference_mode():  # torch's first-forward set-up (thread pools, kernels) do not count
    warm_up(torch.tensor([[2, 3, 4]]))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts from here: imports do not count
before = rss("VmRSS")
model = LlamaForCausalLM.from_pretrained(sys.argv[1])
assert model.dtype == torch.bfloat16
with torch.inference_mode():
    model(torch.tensor([[2, 3, 4]]))
    for parameter in model.parameters():
        parameter.sum()  # every byte read
print(rss("VmHWM") - before)
"""


def test_bf16_loading_holds_the_weights_once(tmp_path):
    """A bf16 checkpoint is mapped, not copied: peak memory grows by about one file (~90 MB)."""
    import os
    import subprocess
    import sys

    config = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2)
    models.LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path)
    tiny = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2)
    models.LlamaForCausalLM(tiny).to(torch.bfloat16).save_pretrained(tmp_path / "tiny")
    size = (tmp_path / "model.safetensors").stat().st_size
    assert size > 80e6
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path), str(tmp_path / "tiny")], capture_output=True, text=True, check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    growth = int(probe.stdout.split()[-1])
    # One copy measures 1.07-1.18x here (torch's code pages and buffers ride on a 90 MB file);
    # a full extra copy of the weights would be 2x or more.
    assert growth < 1.5 * size, f"peak memory grew by {growth / size:.2f}x the checkpoint size"


@pytest.mark.parametrize(
    "family,entries,named",
    [
        ("llama", {"rope_parameters": {"rope_type": "default", "rope_theta": "big"}}, "rope_parameters.rope_theta"),
        ("llama", {"rope_scaling": [1, 2]}, "rope_parameters"),
        ("mistral", {"num_key_value_heads": 3}, "num_attention_heads"),  # 4 query heads over 3 key/value heads
        ("llama", {"num_attention_heads": 0}, "num_attention_heads"),
        ("qwen2", {"num_hidden_layers": 10**9}, "num_hidden_layers"),
        ("qwen2", {"layer_types": ["full_attention"]}, "layer_types"),
        ("llama", {"intermediate_size": 2**30}, "intermediate_size"),  # far more than the checkpoint holds
        ("llama", {"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}}, "longrope"),
    ],
)
def test_bad_configs_are_refused_naming_the_file_and_entry(family, entries, named, tmp_path):
    import json

    from bridge.errors import ConfigError

    theirs, _ = pair(family, "ForCausalLM")
    theirs.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(entries)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=named) as caught:
        getattr(models, PREFIX[family] + "ForCausalLM").from_pretrained(tmp_path)
    assert "config.json" in str(caught.value)
