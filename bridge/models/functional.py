"""The stateless math the model families share: activations, attention masks, attention itself.

Masks are boolean and follow `torch.nn.functional.scaled_dot_product_attention`: True means "may
attend". A mask is only built when something is actually masked; otherwise the functions return
None so that SDPA can pick its fastest kernel (this is also what transformers does).
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from bridge.errors import ConfigError

Tensor = torch.Tensor


def _quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


# transformers' ACT2FN names. "gelu_new" (OpenAI GPT's tanh approximation) is computed by torch's
# fused kernel: the same formula as transformers' Python expression, in one pass instead of six.
ACTIVATIONS: Dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": functools.partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "gelu_fast": functools.partial(F.gelu, approximate="tanh"),
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation function a config names (`hidden_act`, `activation_function`)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(f"unsupported activation function {name!r}; supported: {known}") from None


def _has_padding(attention_mask: Optional[Tensor]) -> bool:
    return attention_mask is not None and not bool(attention_mask.all())


def padding_mask(attention_mask: Optional[Tensor]) -> Optional[Tensor]:
    """A (batch, 1, 1, keys) mask from a (batch, keys) 0/1 mask, or None when nothing is padded."""
    if not _has_padding(attention_mask):
        return None
    return attention_mask.bool()[:, None, None, :]


def causal_mask(
    attention_mask: Optional[Tensor],
    query_length: int,
    key_length: int,
    device: torch.device,
    sliding_window: Optional[int] = None,
) -> Tuple[Optional[Tensor], bool]:
    """(mask, is_causal) for decoder attention over `key_length` keys, the last `query_length` new.

    Query i (at absolute position past + i) may see key j when j <= past + i, key j is not
    padding and, with a `sliding_window` (Mistral, Qwen2), j > past + i - window. When nothing is
    masked but causality the mask is left to SDPA: `is_causal=True` when queries and keys
    coincide, and no mask at all for a single new query (it may see every key).
    """
    padded = _has_padding(attention_mask)
    windowed = sliding_window is not None and key_length > sliding_window
    if not padded and not windowed and query_length == key_length:
        return None, True
    if not padded and not windowed and query_length == 1:
        return None, False
    past = key_length - query_length
    queries = torch.arange(query_length, device=device)[:, None] + past
    keys = torch.arange(key_length, device=device)[None, :]
    mask = keys <= queries
    if windowed:
        mask = mask & (keys > queries - sliding_window)
    mask = mask[None, None, :, :]
    if padded:
        mask = mask & attention_mask.bool()[:, None, None, :]
    return mask, False


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Optional[Tensor],
    *,
    scale: float,
    is_causal: bool = False,
    dropout: float = 0.0,
    need_weights: bool = False,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Multi-head attention over (batch, heads, tokens, head size) inputs.

    Returns the heads merged back to (batch, tokens, heads * head size) and, when `need_weights`,
    the attention probabilities (batch, heads, queries, keys). SDPA cannot return those, so that
    case computes softmax(QK^T * scale) explicitly.
    """
    if need_weights:
        scores = torch.matmul(query, key.transpose(-1, -2)) * scale
        if is_causal:
            mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        output = torch.matmul(F.dropout(weights, p=dropout, training=dropout > 0), value)
    else:
        output = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout, is_causal=is_causal, scale=scale
        )
        weights = None
    batch, heads, tokens, head_size = output.shape
    return output.transpose(1, 2).reshape(batch, tokens, heads * head_size), weights


def last_token_logits(
    logits: Tensor, input_ids: Optional[Tensor], pad_token_id: Optional[int], model_name: str
) -> Tensor:
    """A decoder's sequence-classification logits (batch, labels): each sequence's row of
    `logits` (batch, tokens, labels) at its rightmost token that is not padding (left or right
    padding); the last token without a padding id, which allows a batch of one only."""
    batch = logits.shape[0]
    if pad_token_id is None and batch != 1:
        raise ValueError(f"{model_name} needs config.pad_token_id for batches of more than one")
    if pad_token_id is None or input_ids is None:
        last = torch.full((batch,), -1, device=logits.device)
    else:
        positions = torch.arange(input_ids.shape[-1], device=input_ids.device)
        last = (positions * (input_ids != pad_token_id)).argmax(-1).to(logits.device)
    return logits[torch.arange(batch, device=logits.device), last]
