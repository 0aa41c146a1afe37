"""Which checkpoint key fills which model key: one rule for the torch models and the Flux tables.

transformers (5.x, `core_model_loading.rename_source_key`) reconciles a checkpoint's keys with a
model's in two steps, and so do we:

1. Legacy renames, applied to every key: `LayerNorm.gamma` -> `LayerNorm.weight` and
   `LayerNorm.beta` -> `LayerNorm.bias` (TensorFlow-era BERT ports). Other `gamma`s are left alone.
2. The base-model prefix, decided key by key: a key that starts with `<prefix>.` loses it when the
   model knows the stripped key; otherwise a key gains the prefix when the model knows the
   prefixed one. So a base checkpoint loads into a head, a head's checkpoint into the base model.

A key that then names a tied copy (a head's decoder that shares the word embeddings) fills its
source only when the checkpoint lacks the source. Keys matching a family's ignored patterns
(buffers old checkpoints carry) are dropped without a word; everything else left over is unused.
This module imports neither torch nor bridge.models: bridge.flux_layout uses it before juliacall
has loaded (juliacall must load before torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

# transformers' "legacy" conversion mapping: regular expressions, searched anywhere in the key.
LEGACY_RENAMES = ((re.compile(r"LayerNorm.gamma"), "LayerNorm.weight"), (re.compile(r"LayerNorm.beta"), "LayerNorm.bias"))

# Per family: the attribute under which a head keeps its base model (transformers' base_model_prefix).
BASE_PREFIX = {
    "bert": "bert",
    "roberta": "roberta",
    "gpt2": "transformer",
    "llama": "model",
    "mistral": "model",
    "qwen2": "model",
}

# Per family: regular expressions (searched) for checkpoint keys that are buffers, not weights.
_DECODER_BUFFERS = (r"rotary_emb\.inv_freq$",)  # Llama checkpoints before transformers 4.31
IGNORED_KEYS: Dict[str, tuple] = {
    "bert": (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
    "roberta": (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
    "gpt2": (r"attn\.bias$", r"attn\.masked_bias$"),
    "llama": _DECODER_BUFFERS,
    "mistral": _DECODER_BUFFERS,
    "qwen2": _DECODER_BUFFERS,
}


@dataclass
class KeyMatch:
    """The outcome of matching: {model key: checkpoint key}, and the checkpoint keys left unused."""

    mapping: Dict[str, str] = field(default_factory=dict)
    unused: List[str] = field(default_factory=list)

    def missing(self, model_keys: Iterable[str]) -> List[str]:
        """The model keys no checkpoint key fills, in the model's order."""
        return [key for key in model_keys if key not in self.mapping]


def renamed(key: str) -> str:
    """`key` after the legacy renames (step 1)."""
    for pattern, replacement in LEGACY_RENAMES:
        key = pattern.sub(replacement, key, count=1)
    return key


def with_prefix_rule(key: str, known: Mapping[str, object], prefix: str) -> str:
    """`key` with the base-model prefix stripped or added when that makes it a `known` key (step 2)."""
    if not prefix:
        return key
    head = prefix + "."
    if key.startswith(head) and key[len(head) :] in known:
        return key[len(head) :]
    if head + key in known:
        return head + key
    return key


def match_keys(
    file_keys: Iterable[str],
    model_keys: Sequence[str],
    prefix: str,
    *,
    tied: Optional[Mapping[str, str]] = None,
    ignored: Sequence[str] = (),
) -> KeyMatch:
    """Match checkpoint keys to `model_keys` (the keys to fill; tied copies excluded).

    `tied` is {tied key: the key it shares}; `ignored` are regular expressions for keys to drop
    silently. See the module docstring for the rule.
    """
    tied = dict(tied or {})
    known = dict.fromkeys([*model_keys, *tied])
    patterns = [re.compile(pattern) for pattern in ignored]
    result = KeyMatch()
    fallbacks: Dict[str, str] = {}
    for file_key in file_keys:
        key = with_prefix_rule(renamed(file_key), known, prefix)
        if key in tied:
            fallbacks.setdefault(tied[key], file_key)  # a stored tied copy: redundant unless its source is absent
        elif key in known:
            result.mapping[key] = file_key
        elif not any(pattern.search(key) for pattern in patterns):
            result.unused.append(file_key)
    for source, file_key in fallbacks.items():
        result.mapping.setdefault(source, file_key)
    return result
