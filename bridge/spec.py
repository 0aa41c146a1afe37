"""The grammar of an hgf spec, `"<repo_id>[@<revision>][:<item>]"`, and its parser.

Kept apart from bridge.hgf (which builds what a spec names, on top of bridge.models) so that the
models' `from_pretrained` can read a spec without importing the lookups built on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from bridge.errors import SpecError
from bridge.hub import is_local_source

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


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..") or "\\" in source
