"""`hgf("<repo_id>[@<revision>]:<item>")`: a config, tokenizer, model or task head, by name.

The spec grammar follows Transformers.jl's `hgf"..."` string macro:

    bert-base-cased:config              a config (BertConfig, GPT2Config, ... or a generic one)
    google-bert/bert-base-cased@v1.0:tokenizer
    ./my-model:formaskedlm              a local directory instead of a repo id
    bert-base-cased                     no item: (tokenizer, model)

The item is case-insensitive: `config`, `tokenizer`, `model`, or a task (`formaskedlm`, ...).
Importing this module does not import torch; models and tokenizers are imported when asked for.
"""

from __future__ import annotations

from typing import Any

from bridge.config import PretrainedConfig, load_config
from bridge.errors import SpecError
from bridge.hub import fetch_file

# The grammar lives in bridge.spec (models parse specs too, and must not import this module).
from bridge.spec import CONFIG_ITEM, ITEMS, MODEL_ITEM, SPEC_GRAMMAR, TASKS, TOKENIZER_ITEM, Spec, parse_spec

__all__ = ["hgf", "parse_spec", "Spec", "ITEMS", "TASKS", "CONFIG_ITEM", "TOKENIZER_ITEM", "MODEL_ITEM", "SPEC_GRAMMAR"]


def hgf(spec: str, **kwargs: Any) -> Any:
    """Look up `spec` (see the module docstring) and build what it names.

    `config` -> the family's config class; `tokenizer` -> bridge.tokenizer.load_tokenizer;
    `model` or a task -> that model class's `from_pretrained(source, revision=..., **kwargs)`;
    no item -> `(tokenizer, model)`. Files come through `bridge.hub.fetch_file`: offline once fetched.
    """
    parsed = parse_spec(spec)
    if parsed.item == CONFIG_ITEM:
        return load_spec_config(parsed)
    if parsed.item == TOKENIZER_ITEM:
        return load_spec_tokenizer(parsed)
    if parsed.item is None:
        return load_spec_tokenizer(parsed), load_spec_model(parsed, MODEL_ITEM, **kwargs)
    return load_spec_model(parsed, parsed.item, **kwargs)


def load_spec_config(spec: Spec) -> PretrainedConfig:
    """The config.json of `spec.source` as its family's config class."""
    return load_config(fetch_file(spec.source, "config.json", revision=spec.revision))


def load_spec_tokenizer(spec: Spec) -> Any:
    """The tokenizer of `spec.source` (bridge.tokenizer, imported only now)."""
    from bridge.tokenizer import load_tokenizer

    return load_tokenizer(spec.source, revision=spec.revision)


def load_spec_model(spec: Spec, task: str, **kwargs: Any) -> Any:
    """`task` ("model", "formaskedlm", ...) of the family named in config.json, pretrained."""
    from bridge.models import get_model_type  # imports torch: only when a model is asked for

    config = load_spec_config(spec)
    tasks = get_model_type(config.model_type)
    if task not in tasks:
        raise SpecError(
            f"model type {config.model_type!r} (from {spec.source}) has no task {task!r}; "
            f"expected one of {', '.join(sorted(tasks))}"
        )
    return tasks[task].from_pretrained(spec.source, revision=spec.revision, **kwargs)
