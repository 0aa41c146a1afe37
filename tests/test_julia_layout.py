"""What bridge.flux_layout hands the Julia constructors beyond the weight tables: the dropout
probabilities transformers' modules use, and refusals of configs the Flux models cannot honour."""

from __future__ import annotations

from pathlib import Path

import pytest

import flux_numpy
from bridge import flux_layout
from bridge.errors import ConfigError


def test_dropout_probabilities_are_those_of_transformers_modules():
    """The oracle is each transformers module's own nn.Dropout."""
    overrides = dict(hidden_dropout_prob=0.11, attention_probs_dropout_prob=0.22)
    for family in ("bert", "roberta"):
        for classifier_dropout in (None, 0.33):
            model = flux_numpy.make_model(family, "forsequenceclassification", classifier_dropout=classifier_dropout, **overrides)
            hp = flux_layout.flux_hyperparameters(flux_numpy.our_config(model))
            base = getattr(model, family)
            assert hp["dropout"] == base.embeddings.dropout.p == base.encoder.layer[0].output.dropout.p
            assert hp["attention_dropout"] == base.encoder.layer[0].attention.self.dropout.p
            head = model.dropout if family == "bert" else model.classifier.dropout  # RoBERTa: twice in its head
            assert hp["classifier_dropout"] == head.p
    model = flux_numpy.make_model("gpt2", "lmheadmodel", resid_pdrop=0.11, embd_pdrop=0.22, attn_pdrop=0.33)
    hp = flux_layout.flux_hyperparameters(flux_numpy.our_config(model))
    block = model.transformer.h[0]
    assert hp["dropout"] == block.attn.resid_dropout.p == block.mlp.dropout.p
    assert hp["embedding_dropout"] == model.transformer.drop.p
    assert hp["attention_dropout"] == block.attn.attn_dropout.p


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_encoder_configs_the_flux_encoder_cannot_honour_are_refused(family):
    config = flux_numpy.our_config(flux_numpy.make_model(family, "model"))
    flux_layout.flux_hyperparameters(config)  # absolute positions, no decoder: fine
    config.position_embedding_type = "absolute"
    flux_layout.flux_hyperparameters(config)
    for kind in ("relative_key", "relative_key_query"):
        config.position_embedding_type = kind
        with pytest.raises(ConfigError, match=f"position_embedding_type='{kind}'"):
            flux_layout.flux_hyperparameters(config)
    config.position_embedding_type = "absolute"
    config.is_decoder = True
    with pytest.raises(ConfigError, match="is_decoder=True"):
        flux_layout.flux_hyperparameters(config)


def test_transformers_refuses_a_batch_without_pad_token_as_the_julia_head_does():
    """julia/src/layers.jl's last_token_indices (behind GPT-2's and Llama's sequence classifiers)
    raises with no pad token and batch > 1; this pins the behaviour it copies, so a transformers
    change shows here."""
    import torch

    model = flux_numpy.make_model("gpt2", "forsequenceclassification", pad_token_id=None)
    ids, _, _ = flux_numpy.inputs("gpt2")
    with pytest.raises(ValueError, match="Cannot handle batch sizes > 1 if no padding token is defined"):
        model(input_ids=torch.tensor(ids))
    assert model(input_ids=torch.tensor(ids[:1])).logits.shape == (1, 3)
    source = (Path(__file__).resolve().parents[1] / "julia" / "src" / "layers.jl").read_text()
    assert "Cannot handle batch sizes > 1 if no padding token is defined" in source
