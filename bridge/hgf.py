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

import re
from dataclasses import dataclass
from typing import Any, Optional

from bridge.config import PretrainedConfig, load_config
from bridge.errors import SpecError
from bridge.hub import fetch_file, is_local_source

CONFIG_ITEM = "config"
TOKENIZER_ITEM = "tokenizer"
MODEL_ITEM = "model"
# Task names: the model class name minus its family prefix, lowercased (BertForMaskedLM -> formaskedlm).
TASKS = (
    "forpretraining",
    "lmheadmodel",
    "formaskedlm",
    "fornextsentenceprediction",
    "forsequenceclassification",
    "formultiplechoice",
    "fortokenclassification",
    "forquestionanswering",
    "doubleheadsmodel",
    "forcausallm",
)
ITEMS = (CONFIG_ITEM, TOKENIZER_ITEM, MODEL_ITEM) + TASKS

# Hub repo ids: "name" or "org/name"; letters, digits, "-", "_", "."; no "--" or ".." (the Hub's rule).
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_ITEM = re.compile(r"[A-Za-z]\w*")
SPEC_GRAMMAR = "'<repo_id>[@<revision>][:<item>]' or '<local directory>[:<item>]'"


@dataclass(frozen=True)
class Spec:
    """A parsed spec: where the files come from and what to build from them."""

    source: str  # a Hub repo id or a local directory
    revision: Optional[str]  # None: the default branch (always None for a directory)
    item: Optional[str]  # lowercased; None: (tokenizer, model)


def parse_spec(spec: str) -> Spec:
    """Parse `spec`; SpecError names what is wrong and shows the grammar."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty hgf spec {spec!r}; expected {SPEC_GRAMMAR}")
    spec = spec.strip()
    source, item = spec, None
    head, colon, tail = spec.rpartition(":")
    if colon:
        if not _ITEM.fullmatch(tail):
            raise SpecError(f"hgf spec {spec!r} has item {tail!r}; expected one of {', '.join(ITEMS)}")
        source, item = head, tail.lower()
        if item not in ITEMS:
            raise SpecError(f"hgf spec {spec!r} asks for unknown item {tail!r}; expected one of {', '.join(ITEMS)}")
    if not source.strip():  # Path("") is the working directory: never guess it
        raise SpecError(f"hgf spec {spec!r} names no repo id or directory before ':'; expected {SPEC_GRAMMAR}")
    if is_local_source(source):
        return Spec(source, None, item)
    if _looks_like_path(source):
        raise SpecError(f"hgf spec {spec!r}: local directory {source!r} does not exist")
    repo_id, at, revision = source.partition("@")
    if at and not revision:
        raise SpecError(f"hgf spec {spec!r} has an empty revision after '@'; expected {SPEC_GRAMMAR}")
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id or len(repo_id) > 96:
        raise SpecError(
            f"hgf spec {spec!r}: {repo_id!r} is neither a local directory nor a Hub repo id "
            f"('name' or 'org/name'); expected {SPEC_GRAMMAR}"
        )
    return Spec(repo_id, revision or None, item)


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


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..") or "\\" in source
