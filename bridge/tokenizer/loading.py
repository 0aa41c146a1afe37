"""`load_tokenizer`: find a tokenizer's files (local directory or Hub repo) and build it.

Files are looked up one by one through `bridge.hub.fetch_file`, so a Hub repository is downloaded
once, registered in the artifact store, and loads offline afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from bridge.tokenizer import assemble
from bridge.tokenizer.pretrained_tokenizer import Tokenizer
from bridge.tokenizer.settings import TokenizerError, family_for, read_json_file, read_settings


def load_tokenizer(source: Union[str, os.PathLike], *, revision: Optional[str] = None) -> Tokenizer:
    """The tokenizer in `source` (a local directory or a Hub repo id), at `revision` for a repo.

    Reads tokenizer.json when there is one; otherwise assembles the tokenizer from vocab.txt (BERT)
    or from vocab.json + merges.txt (GPT-2, RoBERTa). tokenizer_config.json and
    special_tokens_map.json supply the family, options and special tokens; config.json's model_type
    names the family when the tokenizer config does not.
    """

    def fetch(filename: str) -> Optional[Path]:
        return _fetch_file(source, filename, revision)

    where = str(source)
    config_path = fetch("tokenizer_config.json")
    tokenizer_config = read_json_file(config_path) if config_path else {}
    tokenizer_json = fetch("tokenizer.json")
    vocab_txt = None if tokenizer_json else fetch("vocab.txt")
    model_config = {}
    if not tokenizer_config.get("tokenizer_class"):
        model_config_path = fetch("config.json")
        model_config = read_json_file(model_config_path) if model_config_path else {}
    family = family_for(tokenizer_config, model_config, has_vocab_txt=vocab_txt is not None, where=where)
    special_tokens_map_path = fetch("special_tokens_map.json")
    special_tokens_map = read_json_file(special_tokens_map_path) if special_tokens_map_path else None
    settings = read_settings(family, tokenizer_config, special_tokens_map, where=where)

    if tokenizer_json:
        backend = assemble.from_tokenizer_json(tokenizer_json)
    elif family.name == "bert":
        if vocab_txt is None:
            raise TokenizerError(f"{where}: no tokenizer.json or vocab.txt for the BERT tokenizer")
        backend = assemble.wordpiece_from_vocab_txt(vocab_txt, settings)
    else:
        vocab_json, merges_txt = fetch("vocab.json"), fetch("merges.txt")
        if vocab_json is None or merges_txt is None:
            missing = " and ".join(name for name, path in (("vocab.json", vocab_json), ("merges.txt", merges_txt)) if path is None)
            raise TokenizerError(f"{where}: no tokenizer.json, and {missing} missing for the {family.name} tokenizer")
        backend = assemble.byte_level_bpe_from_files(vocab_json, merges_txt, settings)
    return Tokenizer(assemble.finish(backend, settings, assembled=tokenizer_json is None), settings)


def _fetch_file(source: Union[str, os.PathLike], filename: str, revision: Optional[str]) -> Optional[Path]:
    """Stand-in for bridge.hub.fetch_file(source, filename, revision=..., missing_ok=True)."""
    directory = Path(source)
    if not directory.is_dir():
        raise TokenizerError(f"{source}: not a local directory (Hub lookups need bridge.hub)")
    path = directory / filename
    return path if path.is_file() else None
