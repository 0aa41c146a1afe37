"""What a model's forward returns: small dataclasses with transformers' field names.

Fields are read as attributes (`output.logits`), by name (`output["logits"]`) or by position
(`output[0]`), where positions count only the fields that are set, as transformers' `ModelOutput` does:
`loss` comes first when labels were given, otherwise the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterator, List, Optional, Tuple, Union

import torch

from bridge.models.losses import span_loss
from bridge.user_warnings import warn_user

Tensor = torch.Tensor
# A layer's cached (key, value), each of shape (batch, heads, seen tokens, head size); one per layer.
KeyValue = Tuple[Tensor, Tensor]
KeyValueCache = Tuple[KeyValue, ...]

# transformers 5.24 renamed the decoder cache `past_key_values` to `cache` (keyword and output field);
# the old name still works, with this warning, as it does there.
CACHE_RENAMED = "`past_key_values` is deprecated (renamed `cache` in transformers 5.24); use `cache` instead"


def cache_argument(cache: Optional[KeyValueCache], past_key_values: Optional[KeyValueCache]) -> Optional[KeyValueCache]:
    """The cache a forward was given, under its name (`cache`) or its deprecated one (`past_key_values`)."""
    if past_key_values is None:
        return cache
    if cache is not None:
        raise TypeError("pass the key/value cache once, as `cache` (not also as `past_key_values`)")
    warn_user(CACHE_RENAMED, FutureWarning)
    return past_key_values


class ModelOutput:
    """Attribute, name and position access to the fields of an output dataclass.

    Like transformers' `ModelOutput` (an ordered dict of the fields that are set): `out[0]` and
    `to_tuple()` give values, iteration and `keys()` give field names, `dict(out)` works.
    """

    def keys(self) -> List[str]:
        """The names of the fields that are set (not None), in declaration order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def values(self) -> List[Any]:
        return [getattr(self, name) for name in self.keys()]

    def items(self) -> List[Tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in self.keys()]

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(self.values())

    @property
    def past_key_values(self) -> Any:
        """The deprecated name of `cache`."""
        warn_user(CACHE_RENAMED, FutureWarning)
        return getattr(self, "cache", None)

    def __getitem__(self, key: Union[int, slice, str]) -> Any:
        if key == "past_key_values":
            warn_user(CACHE_RENAMED, FutureWarning)
            key = "cache"
        if isinstance(key, str):
            if getattr(self, key, None) is None:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class BaseModelOutput(ModelOutput):
    """A base model's output: the last layer's hidden states (and BERT's pooled first token)."""

    last_hidden_state: Optional[Tensor] = None
    pooler_output: Optional[Tensor] = None
    cache: Optional[KeyValueCache] = None
    hidden_states: Optional[Tuple[Tensor, ...]] = None
    attentions: Optional[Tuple[Tensor, ...]] = None


@dataclass
class LogitsOutput(ModelOutput):
    """A head with one set of logits: language modelling, classification, multiple choice."""

    loss: Optional[Tensor] = None
    logits: Optional[Tensor] = None
    cache: Optional[KeyValueCache] = None
    hidden_states: Optional[Tuple[Tensor, ...]] = None
    attentions: Optional[Tuple[Tensor, ...]] = None


@dataclass
class PreTrainingOutput(ModelOutput):
    """BERT's pre-training heads: masked-token and next-sentence logits."""

    loss: Optional[Tensor] = None
    prediction_logits: Optional[Tensor] = None
    seq_relationship_logits: Optional[Tensor] = None
    hidden_states: Optional[Tuple[Tensor, ...]] = None
    attentions: Optional[Tuple[Tensor, ...]] = None


@dataclass
class QuestionAnsweringOutput(ModelOutput):
    """Span extraction: a start and an end logit per token."""

    loss: Optional[Tensor] = None
    start_logits: Optional[Tensor] = None
    end_logits: Optional[Tensor] = None
    hidden_states: Optional[Tuple[Tensor, ...]] = None
    attentions: Optional[Tuple[Tensor, ...]] = None


@dataclass
class DoubleHeadsOutput(ModelOutput):
    """GPT-2's language-modelling plus multiple-choice heads."""

    loss: Optional[Tensor] = None
    mc_loss: Optional[Tensor] = None
    logits: Optional[Tensor] = None
    mc_logits: Optional[Tensor] = None
    cache: Optional[KeyValueCache] = None
    hidden_states: Optional[Tuple[Tensor, ...]] = None
    attentions: Optional[Tuple[Tensor, ...]] = None


def head_output(
    base: BaseModelOutput, logits: Tensor, loss: Optional[Tensor], *, with_cache: bool = False
) -> LogitsOutput:
    """A head's output: its logits and loss, plus the base model's hidden states and attentions
    (and its key/value cache for the heads whose transformers output has one)."""
    return LogitsOutput(
        loss=loss,
        logits=logits,
        cache=base.cache if with_cache else None,
        hidden_states=base.hidden_states,
        attentions=base.attentions,
    )


def span_output(
    base: BaseModelOutput,
    logits: Tensor,
    start_positions: Optional[Tensor],
    end_positions: Optional[Tensor],
) -> QuestionAnsweringOutput:
    """Question answering: split (batch, tokens, 2) logits into start and end; loss given both positions."""
    start_logits, end_logits = (part.squeeze(-1) for part in logits.split(1, dim=-1))
    loss = None
    if start_positions is not None and end_positions is not None:
        loss = span_loss(start_logits, end_logits, start_positions, end_positions)
    return QuestionAnsweringOutput(
        loss=loss,
        start_logits=start_logits,
        end_logits=end_logits,
        hidden_states=base.hidden_states,
        attentions=base.attentions,
    )
