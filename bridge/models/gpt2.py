"""GPT-2 (Radford et al., 2019) and its heads, with transformers' parameter names.

Read top to bottom: Conv1D (GPT-2's transposed linear layer), attention with a key/value cache,
the MLP, the pre-norm block, the model, then the heads (generation: bridge.models.generation).

The key/value cache (`cache`; `past_key_values` before transformers 5.24) is a tuple with one
(key, value) pair per layer, each of shape (batch, heads, tokens seen, head size). Pass it back
with only the new tokens' input_ids and an `attention_mask` covering past and new tokens.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import nn

from bridge.checkpoint_keys import IGNORED_KEYS
from bridge.config import GPT2Config
from bridge.errors import ConfigError
from bridge.models import generation
from bridge.models.functional import activation, attention, causal_mask, last_token_logits
from bridge.models.losses import causal_lm_loss, sequence_classification_loss, token_loss
from bridge.models.outputs import (
    BaseModelOutput,
    DoubleHeadsOutput,
    KeyValue,
    KeyValueCache,
    LogitsOutput,
    QuestionAnsweringOutput,
    cache_argument,
    head_output,
    span_output,
)
from bridge.models.pretrained import PretrainedModel

Tensor = torch.Tensor


class Conv1D(nn.Module):
    """A linear layer whose weight is stored (in, out), as in OpenAI's original GPT-2 code."""

    def __init__(self, out_features: int, in_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: Tensor) -> Tensor:
        flat = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return flat.view(*x.shape[:-1], self.weight.shape[1])


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention; queries, keys and values come from one fused projection."""

    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ConfigError(f"n_embd {config.hidden_size} is not a multiple of n_head {config.num_attention_heads}")
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = self.embed_dim // self.num_heads
        # scale_attn_weights: divide scores by sqrt(head size); scale_attn_by_inverse_layer_idx: also by layer + 1.
        self.scale = self.head_size**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_idx + 1)
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        hidden_states: Tensor,
        layer_past: Optional[KeyValue],
        mask: Optional[Tensor],
        is_causal: bool,
        need_weights: bool,
    ) -> Tuple[Tensor, KeyValue, Optional[Tensor]]:
        batch, tokens, _ = hidden_states.shape
        heads = (batch, tokens, self.num_heads, self.head_size)
        query, key, value = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        query = query.view(heads).transpose(1, 2)
        key = key.view(heads).transpose(1, 2)
        value = value.view(heads).transpose(1, 2)
        if layer_past is not None:
            key = torch.cat((layer_past[0], key), dim=2)
            value = torch.cat((layer_past[1], value), dim=2)
        attended, weights = attention(
            query,
            key,
            value,
            mask,
            scale=self.scale,
            is_causal=is_causal,
            dropout=self.attn_dropout.p if self.training else 0.0,
            need_weights=need_weights,
        )
        return self.resid_dropout(self.c_proj(attended)), (key, value), weights


class GPT2MLP(nn.Module):
    def __init__(self, intermediate_size: int, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = Conv1D(intermediate_size, config.hidden_size)
        self.c_proj = Conv1D(config.hidden_size, intermediate_size)
        self.act = activation(config.activation_function)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class GPT2Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config, layer_idx: int) -> None:
        super().__init__()
        hidden_size = config.hidden_size
        self.ln_1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config.n_inner if config.n_inner is not None else 4 * hidden_size, config)

    def forward(
        self,
        hidden_states: Tensor,
        layer_past: Optional[KeyValue],
        mask: Optional[Tensor],
        is_causal: bool,
        need_weights: bool,
    ) -> Tuple[Tensor, KeyValue, Optional[Tensor]]:
        attended, present, weights = self.attn(self.ln_1(hidden_states), layer_past, mask, is_causal, need_weights)
        attended += hidden_states  # residual connections in place on the fresh outputs: fewer allocations
        transformed = self.mlp(self.ln_2(attended))
        transformed += attended
        return transformed, present, weights


class GPT2PretrainedModel(PretrainedModel):
    """What every GPT-2 model shares: its config class, the `transformer.` prefix, legacy keys."""

    config_class = GPT2Config
    base_model_prefix = "transformer"
    # Old checkpoints store each layer's causal mask as a buffer; the mask is now computed.
    ignored_checkpoint_keys = IGNORED_KEYS["gpt2"]

    def initialize_parameter(self, full_name: str, module: nn.Module, parameter: Tensor) -> None:
        """As the base class, but residual projections get std / sqrt(2 * n_layer) (the GPT-2 paper)."""
        super().initialize_parameter(full_name, module, parameter)
        if full_name.endswith("c_proj.weight"):
            std = self.config.initializer_range / (2 * self.config.n_layer) ** 0.5
            nn.init.normal_(parameter, mean=0.0, std=std)


class GPT2Model(GPT2PretrainedModel):
    """The bare decoder: token + position embeddings, the blocks, a final LayerNorm."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        if config.add_cross_attention:
            raise ConfigError("add_cross_attention (GPT-2 as a seq2seq decoder) is not supported")
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, layer_idx=i) for i in range(config.num_hidden_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        cache: Optional[KeyValueCache] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        past_key_values: Optional[KeyValueCache] = None,
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            input_shape = input_ids.shape  # (batch, [choices,] tokens): leading dimensions are flattened
            inputs_embeds = self.wte(input_ids.reshape(-1, input_shape[-1]))
        else:
            input_shape = inputs_embeds.shape[:-1]
        batch, tokens = inputs_embeds.shape[:2]
        cache = cache_argument(cache, past_key_values)
        past_length = cache[0][0].shape[2] if cache is not None else 0
        use_cache = self.setting(use_cache, "use_cache")
        output_attentions = self.setting(output_attentions, "output_attentions")
        output_hidden_states = self.setting(output_hidden_states, "output_hidden_states")

        if position_ids is None:
            position_embeds = self.wpe.weight[past_length : past_length + tokens]
        else:
            position_embeds = self.wpe(position_ids.reshape(-1, tokens))
        hidden_states = inputs_embeds + position_embeds
        if token_type_ids is not None:  # GPT-2 embeds token types with the word embeddings
            hidden_states = hidden_states + self.wte(token_type_ids.reshape(-1, tokens))
        hidden_states = self.drop(hidden_states)
        if attention_mask is not None:
            attention_mask = attention_mask.reshape(batch, -1)
        mask, is_causal = causal_mask(attention_mask, tokens, past_length + tokens, hidden_states.device)

        presents: List[KeyValue] = []
        all_hidden_states: List[Tensor] = []
        all_attentions: List[Tensor] = []
        # Keep only what was asked for: holding every layer's activations costs memory and speed.
        for i, block in enumerate(self.h):
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            layer_past = cache[i] if cache is not None else None
            hidden_states, present, weights = block(hidden_states, layer_past, mask, is_causal, output_attentions)
            if use_cache:
                presents.append(present)
            if output_attentions:
                all_attentions.append(weights)
        hidden_states = self.ln_f(hidden_states).view(*input_shape, -1)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            cache=tuple(presents) if use_cache else None,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


class GPT2LMHeadModel(GPT2PretrainedModel):
    """Next-token logits (the head shares the token embeddings); `generate` continues a prompt."""

    tied_weights = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        """Logits for every position; `labels` (usually input_ids) give the next-token cross-entropy."""
        outputs = self.transformer(input_ids, **inputs)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return head_output(outputs, logits, loss, with_cache=True)

    def next_token_logits(
        self,
        input_ids: Tensor,
        cache: Optional[KeyValueCache],
        attention_mask: Optional[Tensor],
        position_ids: Optional[Tensor],
    ) -> Tuple[Tensor, KeyValueCache]:
        """The last position's logits and the updated cache: one step of `generate`."""
        outputs = self.transformer(
            input_ids, cache=cache, attention_mask=attention_mask, position_ids=position_ids, use_cache=True
        )
        return self.lm_head(outputs.last_hidden_state[:, -1, :]), outputs.cache

    generate = generation.generate  # greedy or sampled continuation: see bridge.models.generation


class GPT2SequenceSummary(nn.Module):
    """One vector per sequence (GPT-2's `summary_*` config): a chosen token, projected."""

    def __init__(self, config: GPT2Config, num_classes: int) -> None:
        super().__init__()
        self.summary_type = config.summary_type
        if self.summary_type not in ("last", "first", "mean", "cls_index"):
            raise ConfigError(f"summary_type {self.summary_type!r} is not supported")
        self.summary = nn.Linear(config.hidden_size, num_classes) if config.summary_use_proj else nn.Identity()
        self.activation = activation(config.summary_activation) if config.summary_activation else nn.Identity()
        self.first_dropout = nn.Dropout(config.summary_first_dropout)
        self.last_dropout = nn.Dropout(getattr(config, "summary_last_dropout", 0.0))

    def forward(self, hidden_states: Tensor, cls_index: Optional[Tensor] = None) -> Tensor:
        if self.summary_type == "last":
            output = hidden_states[..., -1, :]
        elif self.summary_type == "first":
            output = hidden_states[..., 0, :]
        elif self.summary_type == "mean":
            output = hidden_states.mean(dim=-2)
        else:  # cls_index: the given token of each sequence, by default the last one
            if cls_index is None:
                last = hidden_states.shape[-2] - 1
                cls_index = torch.full(hidden_states.shape[:-2], last, device=hidden_states.device)
            index = cls_index[..., None, None].expand(*cls_index.shape, 1, hidden_states.shape[-1])
            output = hidden_states.gather(-2, index).squeeze(-2)
        return self.last_dropout(self.activation(self.summary(self.first_dropout(output))))


class GPT2DoubleHeadsModel(GPT2PretrainedModel):
    """Language modelling plus multiple choice (inputs (batch, choices, tokens)).

    `mc_token_ids` (batch, choices) pick the token whose state scores each choice (default: the
    last); `labels` give the LM loss (`loss`), `mc_labels` the multiple-choice loss (`mc_loss`).
    """

    tied_weights = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        # transformers forces num_labels = 1 here: one score per choice.
        summary_size = 1 if config.summary_proj_to_labels else config.hidden_size
        self.multiple_choice_head = GPT2SequenceSummary(config, summary_size)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        *,
        mc_token_ids: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        mc_labels: Optional[Tensor] = None,
        **inputs: Any,
    ) -> DoubleHeadsOutput:
        outputs = self.transformer(input_ids, **inputs)
        hidden_states = outputs.last_hidden_state
        logits = self.lm_head(hidden_states)
        mc_logits = self.multiple_choice_head(hidden_states, mc_token_ids).squeeze(-1)
        return DoubleHeadsOutput(
            loss=causal_lm_loss(logits, labels) if labels is not None else None,
            mc_loss=token_loss(mc_logits, mc_labels) if mc_labels is not None else None,
            logits=logits,
            mc_logits=mc_logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class GPT2ForSequenceClassification(GPT2PretrainedModel):
    """`num_labels` logits from each sequence's last non-padding token (needs pad_token_id for batches)."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.transformer(input_ids, **inputs)
        logits = self.score(outputs.last_hidden_state)
        pooled_logits = last_token_logits(logits, input_ids, self.config.pad_token_id, type(self).__name__)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(pooled_logits, labels, self.config.problem_type)
        return head_output(outputs, pooled_logits, loss, with_cache=True)


class GPT2ForTokenClassification(GPT2PretrainedModel):
    """`num_labels` logits per token."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        probability = getattr(config, "classifier_dropout", None)
        if probability is None:
            probability = getattr(config, "hidden_dropout", None)
        self.dropout = nn.Dropout(0.1 if probability is None else probability)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.transformer(input_ids, **inputs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        return head_output(outputs, logits, token_loss(logits, labels) if labels is not None else None)


class GPT2ForQuestionAnswering(GPT2PretrainedModel):
    """Span extraction: `start_logits` and `end_logits` per token."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        *,
        start_positions: Optional[Tensor] = None,
        end_positions: Optional[Tensor] = None,
        **inputs: Any,
    ) -> QuestionAnsweringOutput:
        outputs = self.transformer(input_ids, **inputs)
        return span_output(outputs, self.qa_outputs(outputs.last_hidden_state), start_positions, end_positions)
