"""BERT (Devlin et al., 2018) and its task heads, with transformers' parameter names.

Read top to bottom: embeddings, the encoder (self-attention, feed-forward, layer, stack), the
pooler, the prediction heads, then the models. RoBERTa (roberta.py) reuses the encoder, the pooler
and the task heads defined here.

Every model's forward takes `input_ids` (batch, tokens) or `inputs_embeds`, plus optional
`attention_mask` (1 = token, 0 = padding), `token_type_ids`, `position_ids`, `output_attentions`
and `output_hidden_states`; heads also take their labels and then return a loss.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import nn

from bridge.checkpoint_keys import IGNORED_KEYS
from bridge.config import BertConfig
from bridge.errors import ConfigError
from bridge.models.functional import activation, attention, causal_mask, padding_mask
from bridge.models.losses import causal_lm_loss, sequence_classification_loss, token_loss
from bridge.models.outputs import (
    BaseModelOutput,
    KeyValue,
    KeyValueCache,
    LogitsOutput,
    PreTrainingOutput,
    QuestionAnsweringOutput,
    cache_argument,
    head_output,
    span_output,
)
from bridge.models.pretrained import PretrainedModel

Tensor = torch.Tensor


# ----- embeddings ---------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """Word + token-type + absolute position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig, position_padding_idx: Optional[int] = None) -> None:
        super().__init__()
        position_type = getattr(config, "position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ConfigError(f"position_embedding_type {position_type!r} is not supported (only 'absolute')")
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=position_padding_idx
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        past_length: int = 0,
    ) -> Tensor:
        """`past_length`: tokens already seen (a decoder's cache); default positions continue after them."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if token_type_ids is None:  # every token is of type 0
            token_type_embeddings = self.token_type_embeddings.weight[0]
        else:
            token_type_embeddings = self.token_type_embeddings(token_type_ids)
        if position_ids is None:  # positions past, past + 1, ..., broadcast over the batch
            position_embeddings = self.position_embeddings.weight[past_length : past_length + inputs_embeds.shape[1]]
        else:
            position_embeddings = self.position_embeddings(position_ids)
        embeddings = inputs_embeds + token_type_embeddings + position_embeddings
        return self.dropout(self.LayerNorm(embeddings))


# ----- encoder ------------------------------------------------------------------------------------


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with separate query, key and value projections."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ConfigError(
                f"hidden_size {config.hidden_size} is not a multiple of "
                f"num_attention_heads {config.num_attention_heads}"
            )
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(
        self,
        hidden_states: Tensor,
        mask: Optional[Tensor],
        is_causal: bool,
        need_weights: bool,
        layer_past: Optional[KeyValue] = None,
    ) -> Tuple[Tensor, KeyValue, Optional[Tensor]]:
        """(attended, this layer's (key, value) including `layer_past`, attention weights or None)."""
        batch, tokens, _ = hidden_states.shape
        heads = (batch, tokens, self.num_heads, self.head_size)
        query = self.query(hidden_states).view(heads).transpose(1, 2)
        key = self.key(hidden_states).view(heads).transpose(1, 2)
        value = self.value(hidden_states).view(heads).transpose(1, 2)
        if layer_past is not None:  # a decoder continuing from cached keys and values
            key = torch.cat((layer_past[0], key), dim=2)
            value = torch.cat((layer_past[1], value), dim=2)
        attended, weights = attention(
            query,
            key,
            value,
            mask,
            scale=self.head_size**-0.5,
            is_causal=is_causal,
            dropout=self.dropout.p if self.training else 0.0,
            need_weights=need_weights,
        )
        return attended, (key, value), weights


class BertResidualOutput(nn.Module):
    """Projection to hidden_size, dropout, residual connection and LayerNorm.

    Ends both halves of a layer: `attention.output` (from hidden_size) and `output` (from
    intermediate_size); transformers names these classes BertSelfOutput and BertOutput.
    """

    def __init__(self, config: BertConfig, input_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(input_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: Tensor, residual: Tensor) -> Tensor:
        output = self.dropout(self.dense(hidden_states))
        output += residual  # in place: saves allocating a fresh (batch, tokens, hidden) tensor
        return self.LayerNorm(output)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidualOutput(config, config.hidden_size)

    def forward(
        self,
        hidden_states: Tensor,
        mask: Optional[Tensor],
        is_causal: bool,
        need_weights: bool,
        layer_past: Optional[KeyValue] = None,
    ) -> Tuple[Tensor, KeyValue, Optional[Tensor]]:
        attended, present, weights = self.self(hidden_states, mask, is_causal, need_weights, layer_past)
        return self.output(attended, hidden_states), present, weights


class BertIntermediate(nn.Module):
    """The first half of the feed-forward block: widen to intermediate_size, then the activation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertLayer(nn.Module):
    """One post-norm transformer layer: self-attention, then feed-forward."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config, config.intermediate_size)

    def forward(
        self,
        hidden_states: Tensor,
        mask: Optional[Tensor],
        is_causal: bool,
        need_weights: bool,
        layer_past: Optional[KeyValue] = None,
    ) -> Tuple[Tensor, KeyValue, Optional[Tensor]]:
        attended, present, weights = self.attention(hidden_states, mask, is_causal, need_weights, layer_past)
        return self.output(self.intermediate(attended), attended), present, weights


class BertEncoder(nn.Module):
    """The stack of layers; collects every layer's hidden states, attentions and cache on request."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self,
        hidden_states: Tensor,
        mask: Optional[Tensor],
        is_causal: bool,
        output_attentions: bool,
        output_hidden_states: bool,
        cache: Optional[KeyValueCache] = None,
        use_cache: bool = False,
    ) -> BaseModelOutput:
        # Keep only what was asked for: holding every layer's activations costs memory and speed.
        all_hidden_states: List[Tensor] = [hidden_states] if output_hidden_states else []
        all_attentions: List[Tensor] = []
        presents: List[KeyValue] = []
        for i, layer in enumerate(self.layer):
            layer_past = cache[i] if cache is not None else None
            hidden_states, present, weights = layer(hidden_states, mask, is_causal, output_attentions, layer_past)
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            if output_attentions:
                all_attentions.append(weights)
            if use_cache:
                presents.append(present)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            cache=tuple(presents) if use_cache else None,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


class BertPooler(nn.Module):
    """The first ([CLS]) token's hidden state through a dense layer and tanh."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


# ----- prediction heads ---------------------------------------------------------------------------


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Vocabulary logits. The decoder's weight is tied to the word embeddings and its bias to `bias`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, sequence_output: Tensor) -> Tensor:
        return self.predictions(sequence_output)


class BertOnlyNSPHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, pooled_output: Tensor) -> Tensor:
        return self.seq_relationship(pooled_output)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output: Tensor, pooled_output: Tensor) -> Tuple[Tensor, Tensor]:
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


def classifier_dropout(config: BertConfig) -> nn.Dropout:
    """Dropout before a classifier: `classifier_dropout`, else `hidden_dropout_prob`."""
    probability = config.classifier_dropout
    return nn.Dropout(config.hidden_dropout_prob if probability is None else probability)


# ----- models -------------------------------------------------------------------------------------

LM_HEAD_TIES = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}


class BertPretrainedModel(PretrainedModel):
    """What every BERT model shares: its config class, the `bert.` prefix, legacy keys to drop."""

    config_class = BertConfig
    base_model_prefix = "bert"
    # Non-persistent buffers that older transformers versions saved.
    ignored_checkpoint_keys = IGNORED_KEYS["bert"]


class BertModel(BertPretrainedModel):
    """The bare encoder: `last_hidden_state`, and `pooler_output` when built with a pooler.

    With `config.is_decoder` the self-attention is causal (as in BertLMHeadModel) and, as in
    transformers, the model returns its key/value `cache` (one (key, value) pair per layer, as GPT-2's)
    unless `use_cache=False`; pass them back with only the new tokens.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        if config.add_cross_attention:
            raise ConfigError("add_cross_attention (BERT as a seq2seq decoder) is not supported")
        self.embeddings = self.make_embeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    @staticmethod
    def make_embeddings(config: BertConfig) -> nn.Module:
        return BertEmbeddings(config)

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        cache: Optional[KeyValueCache] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        past_key_values: Optional[KeyValueCache] = None,
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        cache = cache_argument(cache, past_key_values)
        if cache is not None and not self.config.is_decoder:
            raise ValueError("a key/value cache needs a decoder (config.is_decoder=True)")
        past_length = cache[0][0].shape[2] if cache is not None else 0
        embeddings = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_length=past_length,
        )
        if self.config.is_decoder:
            tokens = embeddings.shape[1]
            mask, is_causal = causal_mask(attention_mask, tokens, past_length + tokens, embeddings.device)
        else:
            mask, is_causal = padding_mask(attention_mask), False
        outputs = self.encoder(
            embeddings,
            mask,
            is_causal,
            output_attentions=self.setting(output_attentions, "output_attentions"),
            output_hidden_states=self.setting(output_hidden_states, "output_hidden_states"),
            cache=cache,
            use_cache=self.config.is_decoder and self.setting(use_cache, "use_cache"),
        )
        if self.pooler is not None:
            outputs.pooler_output = self.pooler(outputs.last_hidden_state)
        return outputs


class BertForPreTraining(BertPretrainedModel):
    """Masked-token logits (`prediction_logits`) and next-sentence logits (`seq_relationship_logits`).

    The loss, given both `labels` and `next_sentence_label`, is the sum of the two cross-entropies.
    """

    tied_weights = LM_HEAD_TIES

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        *,
        labels: Optional[Tensor] = None,
        next_sentence_label: Optional[Tensor] = None,
        **inputs: Any,
    ) -> PreTrainingOutput:
        outputs = self.bert(input_ids, **inputs)
        prediction_logits, seq_relationship_logits = self.cls(outputs.last_hidden_state, outputs.pooler_output)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = token_loss(prediction_logits, labels) + token_loss(seq_relationship_logits, next_sentence_label)
        return PreTrainingOutput(
            loss=loss,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class BertLanguageModel(BertPretrainedModel):
    """The encoder and a vocabulary head (`cls.predictions`); the two language models differ in their loss."""

    tied_weights = LM_HEAD_TIES
    language_loss = staticmethod(token_loss)

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        if labels is not None:  # training: no cache, as in transformers
            inputs["use_cache"] = False
        outputs = self.bert(input_ids, **inputs)
        logits = self.cls(outputs.last_hidden_state)
        loss = self.language_loss(logits, labels) if labels is not None else None
        return head_output(outputs, logits, loss, with_cache=True)


class BertLMHeadModel(BertLanguageModel):
    """Next-token logits; meant for configs with `is_decoder=True` (causal attention).

    `labels` (usually the input_ids themselves) give the shifted next-token cross-entropy.
    """

    language_loss = staticmethod(causal_lm_loss)


class BertForMaskedLM(BertLanguageModel):
    """Vocabulary logits per token; `labels` (-100 = not masked) give the masked-token cross-entropy."""

    language_loss = staticmethod(token_loss)


class BertForNextSentencePrediction(BertPretrainedModel):
    """Two logits per pair: 0 = B continues A, 1 = B is random."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertOnlyNSPHead(config)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.bert(input_ids, **inputs)
        logits = self.cls(outputs.pooler_output)
        return head_output(outputs, logits, token_loss(logits, labels) if labels is not None else None)


# The remaining heads are shared with RoBERTa: they reach their encoder through `self.base_model`
# (stored under `base_model_prefix`), so roberta.py only swaps the config class, prefix and base.


class BertForSequenceClassification(BertPretrainedModel):
    """`num_labels` logits from the pooled [CLS] state; regression when num_labels == 1."""

    base_model_class = BertModel

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.set_base_model(self.base_model_class(config))
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.base_model(input_ids, **inputs)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = sequence_classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return head_output(outputs, logits, loss)


class BertForMultipleChoice(BertPretrainedModel):
    """One logit per choice. Inputs are (batch, choices, tokens); `labels` name the right choice."""

    base_model_class = BertModel

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.set_base_model(self.base_model_class(config))
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        reference = input_ids if input_ids is not None else inputs["inputs_embeds"]
        num_choices = reference.shape[1]
        flat = {
            name: value.flatten(0, 1) if isinstance(value, Tensor) else value for name, value in inputs.items()
        }
        flat_ids = input_ids.flatten(0, 1) if input_ids is not None else None
        outputs = self.base_model(flat_ids, **flat)
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        return head_output(outputs, logits, token_loss(logits, labels) if labels is not None else None)


class BertForTokenClassification(BertPretrainedModel):
    """`num_labels` logits per token (named-entity recognition and the like)."""

    base_model_class = BertModel

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.set_base_model(self.base_model_class(config, add_pooling_layer=False))
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.base_model(input_ids, **inputs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        return head_output(outputs, logits, token_loss(logits, labels) if labels is not None else None)


class BertForQuestionAnswering(BertPretrainedModel):
    """Span extraction: `start_logits` and `end_logits` per token; loss from start/end_positions."""

    base_model_class = BertModel

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.set_base_model(self.base_model_class(config, add_pooling_layer=False))
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        *,
        start_positions: Optional[Tensor] = None,
        end_positions: Optional[Tensor] = None,
        **inputs: Any,
    ) -> QuestionAnsweringOutput:
        outputs = self.base_model(input_ids, **inputs)
        return span_output(outputs, self.qa_outputs(outputs.last_hidden_state), start_positions, end_positions)
