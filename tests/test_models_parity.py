"""Every head of bridge.models against transformers (the oracle), on tiny random configs.

Weights move between the two implementations through state dicts in memory here; through files
in test_models_loading.py. Outputs and losses must agree within 1e-5 in fp32, with padding masks
and token types in the inputs.
"""

import pytest
import torch
import transformers

import bridge.config
from bridge.models import get_model_type

ATOL = 1e-5
BATCH, TOKENS, CHOICES, VOCAB = 3, 7, 2, 99
COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
CONFIG_KWARGS = {
    "bert": dict(COMMON, intermediate_size=37, max_position_embeddings=64, type_vocab_size=3),
    "roberta": dict(COMMON, intermediate_size=37, max_position_embeddings=64, type_vocab_size=3),
    # eos inside the tiny vocabulary so that generation can meet it
    "gpt2": dict(COMMON, n_positions=64, pad_token_id=0, bos_token_id=98, eos_token_id=98),
}
CASES = [(family, task) for family in CONFIG_KWARGS for task in get_model_type(family)]
IDS = [f"{family}-{task}" for family, task in CASES]


def make_configs(family, task, **extra):
    """(transformers config, our config) with the same entries."""
    kwargs = dict(CONFIG_KWARGS[family], num_labels=2 if task == "forquestionanswering" else 3)
    kwargs.update(extra)
    if task in ("lmheadmodel", "forcausallm") and family != "gpt2":
        kwargs["is_decoder"] = True
    theirs = transformers.AutoConfig.for_model(family, **kwargs)
    return theirs, bridge.config.CONFIG_CLASSES[family](**kwargs)


def make_pair(family, task, attn_implementation="sdpa", **extra):
    """A random transformers model and ours holding the same weights (theirs -> ours)."""
    their_config, our_config = make_configs(family, task, **extra)
    our_class = get_model_type(family)[task]
    torch.manual_seed(0)
    their_config._attn_implementation = attn_implementation
    theirs = getattr(transformers, our_class.__name__)(their_config).eval()
    ours = our_class.from_state_dict(our_config, theirs.state_dict())
    return theirs, ours


def make_inputs(family, task, generator=None):
    """Inputs with right padding (and left padding for GPT-2), token types, and the task's labels."""
    generator = generator or torch.Generator().manual_seed(1)
    pad = {"bert": 0, "roberta": 1, "gpt2": 0}[family]
    ids = torch.randint(3, VOCAB - 1, (BATCH, TOKENS), generator=generator)
    mask = torch.ones(BATCH, TOKENS, dtype=torch.long)
    mask[1, 5:] = 0  # right padding
    if family == "gpt2":
        mask[2, :2] = 0  # left padding: the first queries of this row see no key at all
    else:
        mask[2, 3:] = 0
    ids = ids.masked_fill(mask == 0, pad)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if family != "gpt2":
        inputs["token_type_ids"] = torch.randint(0, 3, (BATCH, TOKENS), generator=generator)
    if task in ("formultiplechoice", "doubleheadsmodel"):
        inputs = {name: torch.stack([value, value.roll(1, dims=0)], dim=1) for name, value in inputs.items()}

    def labels(high, shape):
        return torch.randint(0, high, shape, generator=generator)

    unlabelled = torch.rand(BATCH, TOKENS, generator=generator) < 0.5
    token_labels = labels(VOCAB, (BATCH, TOKENS)).masked_fill(unlabelled, -100)
    if task == "forpretraining":
        inputs.update(labels=token_labels, next_sentence_label=labels(2, (BATCH,)))
    elif task in ("lmheadmodel", "forcausallm"):
        inputs.update(labels=ids.masked_fill(mask == 0, -100))
    elif task == "formaskedlm":
        inputs.update(labels=token_labels)
    elif task in ("fornextsentenceprediction",):
        inputs.update(labels=labels(2, (BATCH,)))
    elif task == "forsequenceclassification":
        inputs.update(labels=labels(3, (BATCH,)))
    elif task == "formultiplechoice":
        inputs.update(labels=labels(CHOICES, (BATCH,)))
    elif task == "fortokenclassification":
        inputs.update(labels=labels(3, (BATCH, TOKENS)))
    elif task == "forquestionanswering":
        inputs.update(start_positions=labels(TOKENS, (BATCH,)), end_positions=labels(TOKENS + 3, (BATCH,)))
    elif task == "doubleheadsmodel":
        inputs.update(
            labels=inputs["input_ids"],
            mc_labels=labels(CHOICES, (BATCH,)),
            mc_token_ids=labels(TOKENS, (BATCH, CHOICES)),
        )
    return inputs


TENSOR_FIELDS = (
    "loss",
    "mc_loss",
    "last_hidden_state",
    "pooler_output",
    "logits",
    "prediction_logits",
    "seq_relationship_logits",
    "mc_logits",
    "start_logits",
    "end_logits",
)


def assert_outputs_match(theirs, ours):
    compared = 0
    for field in TENSOR_FIELDS:
        expected = getattr(theirs, field, None)
        if expected is None:
            continue
        actual = getattr(ours, field)
        assert actual is not None, field
        assert actual.shape == expected.shape, field
        torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0, msg=field)
        compared += 1
    assert compared >= 1


def run(model, inputs, **flags):
    with torch.no_grad():
        return model(**inputs, **flags)


@pytest.mark.parametrize("family, task", CASES, ids=IDS)
def test_state_dict_keys_and_shapes_are_transformers(family, task):
    theirs, ours = make_pair(family, task)
    their_shapes = {name: tuple(t.shape) for name, t in theirs.state_dict().items()}
    our_shapes = {name: tuple(t.shape) for name, t in ours.state_dict().items()}
    assert our_shapes == their_shapes


@pytest.mark.parametrize("family, task", CASES, ids=IDS)
def test_outputs_and_losses_match(family, task):
    theirs, ours = make_pair(family, task)
    inputs = make_inputs(family, task)
    expected, actual = run(theirs, inputs), run(ours, inputs)
    if "labels" in inputs or "start_positions" in inputs or "mc_labels" in inputs:
        assert actual.loss is not None or actual.mc_loss is not None
    assert_outputs_match(expected, actual)


@pytest.mark.parametrize("family, task", CASES, ids=IDS)
def test_our_weights_drive_their_model(family, task):
    """The other direction in memory: the state dict of our own model loads strictly into theirs."""
    their_config, our_config = make_configs(family, task)
    torch.manual_seed(5)
    ours = get_model_type(family)[task](our_config).eval()  # our initialisation, our tensors
    theirs = getattr(transformers, type(ours).__name__)(their_config).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    inputs = make_inputs(family, task)
    assert_outputs_match(run(theirs, inputs), run(ours, inputs))


@pytest.mark.parametrize("family", list(CONFIG_KWARGS))
def test_hidden_states_and_attentions_match(family):
    theirs, ours = make_pair(family, "model", attn_implementation="eager")  # only eager returns attentions
    inputs = make_inputs(family, "model")
    expected = run(theirs, inputs, output_hidden_states=True, output_attentions=True)
    actual = run(ours, inputs, output_hidden_states=True, output_attentions=True)
    assert len(actual.hidden_states) == len(expected.hidden_states) == 3
    assert len(actual.attentions) == len(expected.attentions) == 2
    ours_tensors = actual.hidden_states + actual.attentions
    for ours_tensor, their_tensor in zip(ours_tensors, expected.hidden_states + expected.attentions):
        torch.testing.assert_close(ours_tensor, their_tensor, atol=ATOL, rtol=0)
    plain = run(ours, inputs)
    assert plain.hidden_states is None and plain.attentions is None


@pytest.mark.parametrize(
    "problem_type, num_labels",
    [("regression", 1), ("multi_label_classification", 3), ("single_label_classification", 3), (None, 1)],
)
@pytest.mark.parametrize("family", list(CONFIG_KWARGS))
def test_sequence_classification_problem_types(family, problem_type, num_labels):
    """Regression (MSE), multi-label (BCE) and single-label (cross-entropy) losses, stated or inferred."""
    theirs, ours = make_pair(family, "forsequenceclassification", problem_type=problem_type, num_labels=num_labels)
    inputs = make_inputs(family, "model")
    if problem_type == "single_label_classification":
        inputs["labels"] = torch.randint(0, num_labels, (BATCH,))
    else:
        inputs["labels"] = torch.rand(BATCH, num_labels)
    expected, actual = run(theirs, inputs), run(ours, inputs)
    assert actual.logits.shape == (BATCH, num_labels)
    assert_outputs_match(expected, actual)


def test_roberta_position_ids_skip_padding():
    """RoBERTa counts positions from pad_token_id + 1 and gives padding the padding position."""
    theirs, ours = make_pair("roberta", "model")
    inputs = make_inputs("roberta", "model")
    inputs["input_ids"][0, 2] = 1  # a padding token inside the sequence shifts later positions
    assert_outputs_match(run(theirs, inputs), run(ours, inputs))
    embeds = ours.embeddings.word_embeddings(inputs["input_ids"])
    by_embeds = {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"]}
    assert_outputs_match(run(theirs, by_embeds), run(ours, by_embeds))


def decode_step_inputs(family):
    """A prompt and its mask, then one more token and the mask covering prompt and token."""
    inputs = make_inputs(family, "model")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    next_ids = torch.randint(3, VOCAB - 1, (BATCH, 1))
    return ids, mask, next_ids, torch.cat([mask, torch.ones(BATCH, 1, dtype=mask.dtype)], dim=1)


@pytest.mark.parametrize(
    "family, task", [("gpt2", "lmheadmodel"), ("bert", "lmheadmodel"), ("roberta", "forcausallm")]
)
def test_cached_decode_matches_transformers(family, task):
    """A decoding step fed only the new token and the cache equals transformers' cached step."""
    theirs, ours = make_pair(family, task)
    ids, mask, next_ids, full_mask = decode_step_inputs(family)
    with torch.no_grad():
        their_prefix = theirs(input_ids=ids, attention_mask=mask, use_cache=True)
        their_step = theirs(input_ids=next_ids, attention_mask=full_mask, cache=their_prefix.cache)
        our_prefix = ours(input_ids=ids, attention_mask=mask, use_cache=True)
        our_step = ours(input_ids=next_ids, attention_mask=full_mask, cache=our_prefix.cache)
        our_full = ours(input_ids=torch.cat([ids, next_ids], dim=1), attention_mask=full_mask, use_cache=False)
    assert list(our_prefix) == list(their_prefix) == ["logits", "cache"]
    assert len(our_prefix.cache) == 2
    assert our_prefix.cache[0][0].shape == (BATCH, 4, TOKENS, 8)
    assert our_step.cache[0][0].shape == (BATCH, 4, TOKENS + 1, 8)
    torch.testing.assert_close(our_step.logits, their_step.logits, atol=ATOL, rtol=0)
    # Row 0 has no padding: the cached step is the last position of the full forward pass.
    torch.testing.assert_close(our_step.logits[0, -1], our_full.logits[0, -1], atol=ATOL, rtol=0)
    assert our_full.cache is None


@pytest.mark.parametrize("family, task", [("gpt2", "lmheadmodel"), ("bert", "lmheadmodel")])
def test_past_key_values_is_a_deprecated_alias_of_cache(family, task):
    """transformers 5.24's rename: the old keyword and output field still work, with a FutureWarning."""
    _, ours = make_pair(family, task)
    ids, mask, next_ids, full_mask = decode_step_inputs(family)
    with torch.no_grad():
        prefix = ours(input_ids=ids, attention_mask=mask, use_cache=True)
        with pytest.warns(FutureWarning, match="past_key_values"):
            old_name_output = prefix.past_key_values
        assert old_name_output is prefix.cache
        with pytest.warns(FutureWarning, match="past_key_values"):
            assert prefix["past_key_values"] is prefix.cache
        new_step = ours(input_ids=next_ids, attention_mask=full_mask, cache=prefix.cache)
        with pytest.warns(FutureWarning, match="past_key_values"):
            old_step = ours(input_ids=next_ids, attention_mask=full_mask, past_key_values=prefix.cache)
        with pytest.raises(TypeError, match="once"):
            ours(input_ids=next_ids, attention_mask=full_mask, cache=prefix.cache, past_key_values=prefix.cache)
    torch.testing.assert_close(old_step.logits, new_step.logits, atol=0, rtol=0)


def test_greedy_generate_equals_transformers():
    theirs, ours = make_pair("gpt2", "lmheadmodel")
    prompt = torch.randint(3, VOCAB - 1, (2, 5), generator=torch.Generator().manual_seed(3))
    expected = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False)
    actual = ours.generate(prompt, max_new_tokens=12)
    assert torch.equal(actual, expected)


def test_sampling_with_top_k_one_is_greedy_and_seeded_sampling_repeats():
    _, ours = make_pair("gpt2", "lmheadmodel")
    prompt = torch.randint(3, VOCAB - 1, (2, 4), generator=torch.Generator().manual_seed(4))
    greedy = ours.generate(prompt, max_new_tokens=6)
    assert torch.equal(ours.generate(prompt, max_new_tokens=6, do_sample=True, top_k=1), greedy)
    first = ours.generate(prompt, 6, do_sample=True, temperature=2.0, generator=torch.Generator().manual_seed(5))
    again = ours.generate(prompt, 6, do_sample=True, temperature=2.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and first.shape == (2, 10)
    assert torch.equal(first[:, :4], prompt)


def test_outputs_index_like_transformers():
    theirs, ours = make_pair("bert", "formaskedlm")
    inputs = make_inputs("bert", "formaskedlm")
    expected, actual = run(theirs, inputs), run(ours, inputs)
    assert list(actual) == list(expected) == ["loss", "logits"]  # names of the fields that are set
    assert len(actual) == len(expected) == 2
    torch.testing.assert_close(actual[0], expected[0], atol=ATOL, rtol=0)  # the loss comes first
    torch.testing.assert_close(actual["logits"], expected["logits"], atol=ATOL, rtol=0)
    assert dict(actual).keys() == dict(expected).keys()
    loss, logits = actual.to_tuple()
    assert logits is actual.logits
    with pytest.raises(KeyError):
        actual["hidden_states"]  # not set: absent, as in transformers
    with pytest.raises(KeyError):
        expected["hidden_states"]


def test_generate_stops_at_eos_and_pads_like_transformers():
    theirs, ours = make_pair("gpt2", "lmheadmodel")
    prompt = torch.randint(3, VOCAB - 1, (3, 4), generator=torch.Generator().manual_seed(6))
    eos = int(ours.generate(prompt, max_new_tokens=8)[0, 6])  # row 0's third new token ends it
    ours.config.eos_token_id = theirs.config.eos_token_id = theirs.generation_config.eos_token_id = eos
    expected = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
    actual = ours.generate(prompt, max_new_tokens=8)
    assert torch.equal(actual, expected)
    finished_at = (actual[0, 4:] == eos).nonzero()[0, 0] + 4
    assert (actual[0, finished_at + 1 :] == ours.config.pad_token_id).all()


NO_DROPOUT = {
    "bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "roberta": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "gpt2": dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0),
}


@pytest.mark.parametrize(
    "family, task", [("bert", "formaskedlm"), ("roberta", "forsequenceclassification"), ("gpt2", "doubleheadsmodel")]
)
def test_training_gradients_match(family, task):
    """In train mode (dropout off, so both sides are deterministic) every parameter gets the same gradient."""
    theirs, ours = make_pair(family, task, **NO_DROPOUT[family])
    theirs.train(), ours.train()
    inputs = make_inputs(family, task)
    for model in (theirs, ours):
        outputs = model(**inputs)
        (outputs.loss + (outputs.mc_loss if family == "gpt2" else 0)).backward()
    their_parameters = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        torch.testing.assert_close(parameter.grad, their_parameters[name].grad, atol=ATOL, rtol=0, msg=name)


def test_generate_from_left_padded_prompts_equals_transformers():
    theirs, ours = make_pair("gpt2", "lmheadmodel")
    prompt = torch.randint(3, VOCAB - 1, (3, 6), generator=torch.Generator().manual_seed(7))
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0
    mask[2, :4] = 0
    prompt = prompt.masked_fill(mask == 0, 0)
    expected = theirs.generate(prompt, attention_mask=mask, max_new_tokens=10, do_sample=False)
    actual = ours.generate(prompt, max_new_tokens=10, attention_mask=mask)
    assert torch.equal(actual, expected)
    unpadded = ours.generate(prompt[2:, 4:], max_new_tokens=10)  # the padding changed nothing
    assert torch.equal(actual[2:, 4:], unpadded)
