"""`load_tokenizer`: find a tokenizer's files (local directory or Hub repo) and build it.

Files are looked up one by one through `bridge.hub.fetch_file`, so a Hub repository is downloaded
once, registered in the artifact store, and loads offline afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from bridge.artifacts import NotCachedError
from bridge.errors import BridgeError
from bridge.hub import fetch_file, is_local_source, offline_hub_source
from bridge.tokenizer import assemble
from bridge.tokenizer.pretrained_tokenizer import Tokenizer
from bridge.tokenizer.settings import (
    FAMILIES,
    TokenizerError,
    family_for,
    family_of_tokenizer_json,
    read_json_file,
    read_settings,
    read_text_file,
)

CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"  # <name>.jinja each; read from local directories


def load_tokenizer(source: Union[str, os.PathLike], *, revision: Optional[str] = None) -> Tokenizer:
    """The tokenizer in `source` (a local directory or a Hub repo id), at `revision` for a repo.

    Reads tokenizer.json when there is one; otherwise assembles the tokenizer from vocab.txt (BERT)
    or from vocab.json + merges.txt (GPT-2, RoBERTa). tokenizer_config.json and
    special_tokens_map.json supply the family, options, special tokens and chat template (which
    chat_template.jinja overrides); the family is chosen from tokenizer_class and config.json's
    model_type as transformers' AutoTokenizer chooses the class.
    """

    def fetch(filename: str) -> Optional[Path]:
        return fetch_file(source, filename, revision=revision, missing_ok=True)

    def fetch_json(filename: str) -> dict:
        """The JSON object in `filename`, or {} when the source has no such file."""
        path = fetch(filename)
        return read_json_file(path) if path else {}

    where = str(source)
    tokenizer_config = fetch_json("tokenizer_config.json")
    tokenizer_json = fetch("tokenizer.json")
    tokenizer_json_text = read_text_file(tokenizer_json) if tokenizer_json else None
    vocab_txt = None if tokenizer_json else fetch("vocab.txt")
    model_config = fetch_json("config.json")
    family = family_for(tokenizer_config, model_config, tokenizer_json_text=tokenizer_json_text, where=where)
    if family is None:  # no config names it: judge by the files
        if tokenizer_json:
            family = family_of_tokenizer_json(read_json_file(tokenizer_json))
        else:
            family = FAMILIES["bert"] if vocab_txt else FAMILIES["gpt2"]
    settings = read_settings(
        family,
        tokenizer_config,
        fetch_json("special_tokens_map.json"),
        chat_template_files=_chat_template_files(source, fetch),
        where=where,
    )

    if tokenizer_json and family.name in assemble.REBUILT_FAMILIES:
        backend = assemble.rebuilt_from_tokenizer_json(tokenizer_json, tokenizer_json_text, settings)
    elif tokenizer_json:
        backend = assemble.from_tokenizer_json(tokenizer_json, tokenizer_json_text)
    elif family.name == "bert" and vocab_txt is not None:
        backend = assemble.wordpiece_from_vocab_txt(vocab_txt, settings)
    elif family.name == "bert":
        raise _no_tokenizer_files(source, revision, "tokenizer.json and vocab.txt")
    elif family.name not in ("gpt2", "roberta"):
        if offline_hub_source(source):
            raise _no_tokenizer_files(source, revision, "tokenizer.json")
        raise TokenizerError(
            f"{where}: the {family.class_name} tokenizer is read from tokenizer.json, which this source lacks "
            f"(SentencePiece tokenizer.model files are not supported)"
        )
    else:
        vocab_json = fetch("vocab.json")
        if vocab_json is None:
            raise _no_tokenizer_files(source, revision, "tokenizer.json, vocab.txt, vocab.json + merges.txt")
        merges_txt = fetch("merges.txt")
        if merges_txt is None:
            raise TokenizerError(
                f"{where}: has vocab.json but no merges.txt for the {family.name} byte-level BPE"
            )
        backend = assemble.byte_level_bpe_from_files(vocab_json, merges_txt, settings)
    return Tokenizer(assemble.finish(backend, settings, assembled=tokenizer_json is None), settings)


def _no_tokenizer_files(source: Union[str, os.PathLike], revision: Optional[str], looked_for: str) -> BridgeError:
    """The error for a source without tokenizer files: offline, they may just not be fetched yet."""
    if offline_hub_source(source):
        pinned = f"{source}@{revision}" if revision else str(source)
        return NotCachedError(
            f"no tokenizer file of {pinned} is cached ({looked_for}) and HF_HUB_OFFLINE is set; "
            f"fetch them once with network access: `hgf get {pinned}:tokenizer`"
        )
    return TokenizerError(f"{source}: no tokenizer files (looked for {looked_for})")


def _chat_template_files(source: Union[str, os.PathLike], fetch) -> dict[str, str]:
    """The chat templates kept as files, by name: chat_template.jinja is "default"."""
    templates = {}
    path = fetch(CHAT_TEMPLATE_FILE)
    if path is not None:
        templates["default"] = read_text_file(path)
    directory = Path(source).expanduser() / CHAT_TEMPLATE_DIR
    if is_local_source(source) and directory.is_dir():
        for template in sorted(directory.glob("*.jinja")):
            templates[template.name.removesuffix(".jinja")] = read_text_file(template)
    return templates
