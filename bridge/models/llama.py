"""Llama-family decoders (Llama, Mistral, Qwen2) and their heads, with transformers' parameter names.

Read top to bottom: RMSNorm, rotary position embeddings, grouped-query attention (its causal and
sliding-window masks come from bridge.models.functional), the SwiGLU MLP, the pre-norm decoder
layer, the model, its heads, then the Mistral and Qwen2 names for the same classes.

The three families are one architecture with a few switches read from the config (which biases,
which sliding windows) and the RoPE types these checkpoints ship: bridge.llama_family holds both,
torch-free, shared with the Flux models.

The key/value cache (`cache`; `past_key_values` before transformers 5.24) is a tuple with one
(key, value) pair per layer, keys already rotated, each of shape (batch, key/value heads, tokens
seen, head_dim). Pass it back with only the new tokens and an `attention_mask` covering past and
new tokens (and `position_ids` when the prompt was left-padded: `generate` does this).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from bridge.checkpoint_keys import IGNORED_KEYS
from bridge.config import LlamaConfig, MistralConfig, Qwen2Config
from bridge.errors import ConfigError
from bridge.llama_family import head_dim, layer_switches, rope_frequencies
from bridge.models import generation
from bridge.models.functional import activation, attention, causal_mask, last_token_logits
from bridge.models.losses import causal_lm_loss, sequence_classification_loss, token_loss
from bridge.models.outputs import (
    BaseModelOutput,
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


class LlamaRMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 and cast back before the weight
    (transformers' order: in bf16 the product is rounded once, after the cast)."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden_states: Tensor) -> Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.eps)
        return self.weight * hidden_states.to(input_dtype)


# ---- rotary position embeddings


class LlamaRotaryEmbedding(nn.Module):
    """cos and sin of position x frequency, shared by every layer (frequencies: bridge.llama_family).

    "dynamic" RoPE changes its frequencies with the longest sequence seen, as transformers' does:
    recomputed when positions grow past what was last computed, reset below the original length.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        inv_freq, self.attention_scaling = self.frequencies()
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.original_inv_freq = inv_freq
        self.original_length = self.longest_seen = config.max_position_embeddings

    def forward(self, x: Tensor, position_ids: Tensor) -> Tuple[Tensor, Tensor]:
        if self.rope_type == "dynamic":
            self._update_dynamic_frequencies(int(position_ids.max()) + 1)
        inv_freq = self.inv_freq.to(device=x.device, dtype=torch.float32)
        frequencies = position_ids[..., None].float() * inv_freq
        angles = torch.cat((frequencies, frequencies), dim=-1)
        cos = angles.cos() * self.attention_scaling
        sin = angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)

    def frequencies(self, seq_len: Optional[int] = None) -> Tuple[Tensor, float]:
        """bridge.llama_family's frequencies as a CPU tensor (even inside torch.device("meta"), as
        when loading: they are computed, never loaded)."""
        inv_freq, scaling = rope_frequencies(self.config, seq_len)
        return torch.tensor(inv_freq, device="cpu"), scaling

    def _update_dynamic_frequencies(self, seq_len: int) -> None:
        if seq_len > self.longest_seen:
            self.inv_freq, _ = self.frequencies(seq_len)
            self.longest_seen = seq_len
        if seq_len < self.original_length and self.longest_seen > self.original_length:
            self.inv_freq = self.original_inv_freq
            self.longest_seen = self.original_length


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (batch, heads, tokens, head_dim) queries or keys; cos/sin are (batch, tokens, head_dim)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


# ---- attention, MLP, layer


class LlamaAttention(nn.Module):
    """Grouped-query self-attention: `num_key_value_heads` key/value heads serve all query heads."""

    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        if config.num_attention_heads % config.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads {config.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {config.num_key_value_heads}"
            )
        self.head_dim = head_dim(config)
        self.num_heads = config.num_attention_heads
        self.num_key_value_heads = config.num_key_value_heads
        self.groups = self.num_heads // self.num_key_value_heads
        self.scale = self.head_dim**-0.5
        self.dropout = config.attention_dropout
        qkv_bias, output_bias, _, self.sliding_window = layer_switches(config, layer_idx)
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden, self.num_key_value_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden, self.num_key_value_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, hidden, bias=output_bias)

    def forward(
        self,
        hidden_states: Tensor,
        rotary: Tuple[Tensor, Tensor],
        layer_past: Optional[KeyValue],
        mask: Optional[Tensor],
        is_causal: bool,
        need_weights: bool,
    ) -> Tuple[Tensor, KeyValue, Optional[Tensor]]:
        batch, tokens, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, tokens, -1, self.head_dim).transpose(1, 2)
        key = self.k_proj(hidden_states).view(batch, tokens, -1, self.head_dim).transpose(1, 2)
        value = self.v_proj(hidden_states).view(batch, tokens, -1, self.head_dim).transpose(1, 2)
        cos, sin = rotary
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        if layer_past is not None:
            key = torch.cat((layer_past[0], key), dim=2)
            value = torch.cat((layer_past[1], value), dim=2)
        present = (key, value)
        dropout = self.dropout if self.training else 0.0
        if mask is None and not need_weights:  # SDPA's fused kernels serve grouped heads without copies
            attended = F.scaled_dot_product_attention(
                query, key, value, dropout_p=dropout, is_causal=is_causal, scale=self.scale, enable_gqa=self.groups > 1
            )
            return self.o_proj(attended.transpose(1, 2).reshape(batch, tokens, -1)), present, None
        key, value = repeat_kv(key, self.groups), repeat_kv(value, self.groups)
        attended, weights = attention(
            query, key, value, mask, scale=self.scale, is_causal=is_causal, dropout=dropout, need_weights=need_weights
        )
        return self.o_proj(attended), present, weights


def repeat_kv(states: Tensor, groups: int) -> Tensor:
    """(batch, kv heads, tokens, d) -> (batch, kv heads * groups, tokens, d): each head repeated in place."""
    if groups == 1:
        return states
    batch, heads, tokens, size = states.shape
    return states[:, :, None].expand(batch, heads, groups, tokens, size).reshape(batch, heads * groups, tokens, size)


class LlamaMLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x)), act = `hidden_act` (silu in every released checkpoint)."""

    def __init__(self, config: LlamaConfig, bias: bool) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)
        self.act = activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        # Declared in transformers' order, so that state dicts list keys alike.
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config, bias=layer_switches(config, layer_idx)[2])
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        hidden_states: Tensor,
        rotary: Tuple[Tensor, Tensor],
        layer_past: Optional[KeyValue],
        masks: dict,
        need_weights: bool,
    ) -> Tuple[Tensor, KeyValue, Optional[Tensor]]:
        """`masks` holds (mask, is_causal) per sliding window (None: full attention)."""
        mask, is_causal = masks[self.self_attn.sliding_window]
        attended, present, weights = self.self_attn(
            self.input_layernorm(hidden_states), rotary, layer_past, mask, is_causal, need_weights
        )
        attended += hidden_states  # residual connections in place on the fresh outputs: fewer allocations
        transformed = self.mlp(self.post_attention_layernorm(attended))
        transformed += attended
        return transformed, present, weights


# ---- the model


class LlamaPretrainedModel(PretrainedModel):
    """What every model of the family shares: config class, the `model.` prefix, initialisation."""

    config_class = LlamaConfig
    base_model_prefix = "model"
    ignored_checkpoint_keys = IGNORED_KEYS["llama"]  # rotary_emb.inv_freq, a buffer old checkpoints saved

    def initialize_parameter(self, full_name: str, module: nn.Module, parameter: Tensor) -> None:
        if isinstance(module, LlamaRMSNorm):
            nn.init.ones_(parameter)
        else:
            super().initialize_parameter(full_name, module, parameter)


class LlamaModel(LlamaPretrainedModel):
    """The bare decoder: token embeddings, the layers, a final RMSNorm (no position embeddings: RoPE)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        cache: Optional[KeyValueCache] = None,
        inputs_embeds: Optional[Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        past_key_values: Optional[KeyValueCache] = None,
    ) -> BaseModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        cache = cache_argument(cache, past_key_values)
        hidden_states = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, tokens = hidden_states.shape[:2]
        past_length = cache[0][0].shape[2] if cache is not None else 0
        use_cache = self.setting(use_cache, "use_cache")
        output_attentions = self.setting(output_attentions, "output_attentions")
        output_hidden_states = self.setting(output_hidden_states, "output_hidden_states")
        if position_ids is None:
            position_ids = torch.arange(past_length, past_length + tokens, device=hidden_states.device)[None]
        rotary = self.rotary_emb(hidden_states, position_ids)
        # One mask per distinct window (None: full causal attention), shared by the layers using it.
        windows = {layer.self_attn.sliding_window for layer in self.layers}
        masks = {
            window: causal_mask(attention_mask, tokens, past_length + tokens, hidden_states.device, window)
            for window in windows
        }

        presents: List[KeyValue] = []
        all_hidden_states: List[Tensor] = []
        all_attentions: List[Tensor] = []
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            layer_past = cache[i] if cache is not None else None
            hidden_states, present, weights = layer(hidden_states, rotary, layer_past, masks, output_attentions)
            if use_cache:
                presents.append(present)
            if output_attentions:
                all_attentions.append(weights)
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            cache=tuple(presents) if use_cache else None,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )


# ---- heads


class LlamaForCausalLM(LlamaPretrainedModel):
    """Next-token logits; `generate` continues prompts. The head is tied to the token embeddings
    when `tie_word_embeddings` (small Llama 3.2 and Qwen2 checkpoints) and separate otherwise."""

    base_class = LlamaModel
    tied_weights = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = self.base_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        *,
        labels: Optional[Tensor] = None,
        logits_to_keep: int = 0,
        **inputs: Any,
    ) -> LogitsOutput:
        """Logits for every position (the last `logits_to_keep` only, when not 0); `labels`
        (usually input_ids, -100 where ignored) give the next-token cross-entropy."""
        outputs = self.model(input_ids, **inputs)
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
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
        outputs = self(
            input_ids, cache=cache, attention_mask=attention_mask, position_ids=position_ids, use_cache=True, logits_to_keep=1
        )
        return outputs.logits[:, -1, :], outputs.cache

    generate = generation.generate  # greedy or sampled continuation: see bridge.models.generation


class LlamaForSequenceClassification(LlamaPretrainedModel):
    """`num_labels` logits per sequence, read at its last non-padding token (left or right padding)."""

    base_class = LlamaModel

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = self.base_class(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.model(input_ids, **inputs)
        logits = self.score(outputs.last_hidden_state)
        pooled = last_token_logits(logits, input_ids, self.config.pad_token_id, type(self).__name__)
        loss = sequence_classification_loss(pooled, labels, self.config.problem_type) if labels is not None else None
        return head_output(outputs, pooled, loss, with_cache=True)


class LlamaForTokenClassification(LlamaPretrainedModel):
    """`num_labels` logits per token."""

    base_class = LlamaModel

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = self.base_class(config)
        probability = getattr(config, "classifier_dropout", None)
        if probability is None:
            probability = getattr(config, "hidden_dropout", None)
        self.dropout = nn.Dropout(0.1 if probability is None else probability)
        bias = getattr(config, "token_classification_bias", True)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=bias)
        self.post_init()

    def forward(
        self, input_ids: Optional[Tensor] = None, *, labels: Optional[Tensor] = None, **inputs: Any
    ) -> LogitsOutput:
        outputs = self.model(input_ids, **inputs)
        logits = self.score(self.dropout(outputs.last_hidden_state))
        return head_output(outputs, logits, token_loss(logits, labels) if labels is not None else None)


class LlamaForQuestionAnswering(LlamaPretrainedModel):
    """Span extraction: `start_logits` and `end_logits` per token. transformers keeps this head's
    base model under `transformer.`, not `model.` (a compatibility choice of theirs we follow)."""

    base_class = LlamaModel
    base_model_prefix = "transformer"

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.set_base_model(self.base_class(config))
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
        outputs = self.base_model(input_ids, **inputs)
        return span_output(outputs, self.qa_outputs(outputs.last_hidden_state), start_positions, end_positions)


# ---- Mistral and Qwen2: the same classes, with their config class (the switches read it)


class MistralModel(LlamaModel):
    config_class = MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    config_class, base_class = MistralConfig, MistralModel


class MistralForSequenceClassification(LlamaForSequenceClassification):
    config_class, base_class = MistralConfig, MistralModel


class MistralForTokenClassification(LlamaForTokenClassification):
    config_class, base_class = MistralConfig, MistralModel


class MistralForQuestionAnswering(LlamaForQuestionAnswering):
    config_class, base_class = MistralConfig, MistralModel
    base_model_prefix = "model"  # unlike Llama's and Qwen2's, transformers' Mistral head uses `model.`


class Qwen2Model(LlamaModel):
    config_class = Qwen2Config


class Qwen2ForCausalLM(LlamaForCausalLM):
    config_class, base_class = Qwen2Config, Qwen2Model


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    config_class, base_class = Qwen2Config, Qwen2Model


class Qwen2ForTokenClassification(LlamaForTokenClassification):
    config_class, base_class = Qwen2Config, Qwen2Model


class Qwen2ForQuestionAnswering(LlamaForQuestionAnswering):
    config_class, base_class = Qwen2Config, Qwen2Model
