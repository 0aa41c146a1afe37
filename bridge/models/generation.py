"""Text generation for the decoder families: greedy and sampled, with transformers' semantics.

One loop serves every causal language model. A model takes part by providing
`next_token_logits(input_ids, cache, attention_mask, position_ids) -> (logits, cache)`: the
(batch, vocab) logits of the last position and its updated key/value cache; its class then sets
`generate = generation.generate`, so that `model.generate(input_ids, ...)` runs this loop.

The choice of each token follows transformers' `generate` step for step: repetition penalty on
the raw logits, then (when sampling) temperature, top-k and top-p, in that order; greedy is the
argmax of the float32 logits. A sequence that produced an end-of-sequence token is continued with
the padding token, and generation stops once every sequence has. Left-padded prompts come with an
`attention_mask`; positions then count real tokens only, as transformers counts them.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch

Tensor = torch.Tensor
TokenIds = Union[int, Sequence[int], None]


@torch.inference_mode()
def generate(
    model: Any,
    input_ids: Tensor,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    top_k: Optional[int] = None,
    temperature: float = 1.0,
    *,
    top_p: Optional[float] = None,
    repetition_penalty: Optional[float] = None,
    eos_token_id: TokenIds = None,
    pad_token_id: Optional[int] = None,
    attention_mask: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """The prompts (batch, tokens) followed by up to `max_new_tokens` generated tokens.

    `eos_token_id` (one id or several) and `pad_token_id` default to the model's config; without a
    padding token, finished sequences are continued with the first end-of-sequence token.
    """
    _check_settings(max_new_tokens, temperature, top_k, top_p, repetition_penalty)
    config = model.config
    eos_ids = _id_list(config.eos_token_id if eos_token_id is None else eos_token_id)
    if pad_token_id is None:
        pad_token_id = config.pad_token_id if config.pad_token_id is not None else (eos_ids or [0])[0]
    eos = torch.tensor(eos_ids, dtype=input_ids.dtype, device=input_ids.device)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    position_ids = padding_lengths = None
    if attention_mask is not None:
        position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        padding_lengths = (attention_mask != 0).int().argmax(dim=1)

    sequences, step_input, cache = input_ids, input_ids, None
    for _ in range(max_new_tokens):
        logits, cache = model.next_token_logits(step_input, cache, attention_mask, position_ids)
        scores = logits.float()
        if repetition_penalty is not None and repetition_penalty != 1.0:
            scores = apply_repetition_penalty(scores, sequences, repetition_penalty, padding_lengths)
        if do_sample:
            scores = filter_scores(scores, temperature, top_k, top_p)
            next_tokens = torch.multinomial(scores.softmax(dim=-1), num_samples=1, generator=generator).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_token_id), next_tokens)
        sequences = torch.cat((sequences, next_tokens[:, None]), dim=1)
        finished |= torch.isin(next_tokens, eos)
        if bool(finished.all()):
            break
        step_input = next_tokens[:, None]
        if attention_mask is not None:
            attention_mask = torch.cat((attention_mask, attention_mask.new_ones(attention_mask.shape[0], 1)), dim=1)
            position_ids = position_ids[:, -1:] + 1
    return sequences


def apply_repetition_penalty(
    scores: Tensor, sequences: Tensor, penalty: float, padding_lengths: Optional[Tensor] = None
) -> Tensor:
    """transformers' RepetitionPenaltyLogitsProcessor: every token already in the sequence has its
    logit divided by `penalty` when positive, multiplied when negative. The first
    `padding_lengths[b]` tokens of sequence b (its left padding) do not count."""
    vocab = scores.shape[-1]
    if padding_lengths is not None:
        positions = torch.arange(sequences.shape[1], device=sequences.device)
        sequences = sequences.masked_fill(positions[None, :] < padding_lengths[:, None], vocab)
    seen = torch.zeros(scores.shape[0], vocab + 1, dtype=torch.bool, device=scores.device)
    seen = seen.scatter_(1, sequences.clamp(max=vocab), True)[:, :vocab]
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def filter_scores(scores: Tensor, temperature: float, top_k: Optional[int], top_p: Optional[float]) -> Tensor:
    """Temperature, then top-k, then top-p (nucleus), as transformers' logits warpers; removed
    tokens get -inf. At least one token always stays."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k is not None and top_k > 0:
        k = min(top_k, scores.shape[-1])
        threshold = torch.topk(scores, k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < threshold, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ascending, order = torch.sort(scores, descending=False)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    return scores


def _id_list(ids: TokenIds) -> list:
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]


def _check_settings(
    max_new_tokens: int,
    temperature: float,
    top_k: Optional[int],
    top_p: Optional[float],
    repetition_penalty: Optional[float],
) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    if top_p is not None and not 0 <= top_p <= 1:
        raise ValueError(f"top_p must be in [0, 1], got {top_p!r}")
    if repetition_penalty is not None and not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be positive, got {repetition_penalty!r}")
