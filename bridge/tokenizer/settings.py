"""What a tokenizer's JSON side files say: its family, special tokens and call defaults.

A Hub repository describes its tokenizer in up to three small files besides the vocabulary:
`tokenizer_config.json` (class name, lower-casing, `model_max_length`, special tokens, chat template,
...), `special_tokens_map.json` (the named special tokens, overriding the config as transformers
does) and, for the family only, `config.json` (`model_type`). `read_settings` merges them into one
`TokenizerSettings`, with each family's defaults taken from transformers' tokenizer classes;
`family_for` picks the family the way transformers 5.24's AutoTokenizer picks a class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from tokenizers import AddedToken

from bridge.errors import BridgeError

# transformers' stand-in for "no length limit" (tokenization_utils_base.VERY_LARGE_INTEGER); any
# model_max_length above LARGE_INTEGER (1e20) counts as no limit.
UNLIMITED_LENGTH = int(1e30)
LARGE_INTEGER = int(1e20)

# The order transformers adds named special tokens in (SPECIAL_TOKENS_ATTRIBUTES); new tokens get
# ids in this order, so it matters for tokens missing from the vocabulary.
SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


class TokenizerError(BridgeError, ValueError):
    """A tokenizer that cannot be loaded (missing or malformed files) or a call it cannot serve."""


class ChatTemplateError(TokenizerError):
    """A chat template that is missing, does not compile, or fails (`raise_exception`) on a conversation."""


@dataclass(frozen=True)
class Family:
    """A tokenizer family: what transformers' class of that name defaults to."""

    name: str
    class_name: str  # written as tokenizer_class by save_pretrained
    model_input_names: tuple[str, ...]
    default_special_tokens: dict[str, str]
    padding_side: str = "right"


FAMILIES = {
    "bert": Family(
        name="bert",
        class_name="BertTokenizer",
        model_input_names=("input_ids", "token_type_ids", "attention_mask"),
        default_special_tokens={
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
    ),
    "gpt2": Family(
        name="gpt2",
        class_name="GPT2Tokenizer",
        model_input_names=("input_ids", "attention_mask"),
        default_special_tokens={
            "unk_token": "<|endoftext|>",
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
        },
    ),
    "roberta": Family(
        name="roberta",
        class_name="RobertaTokenizer",
        model_input_names=("input_ids", "attention_mask"),
        default_special_tokens={
            "bos_token": "<s>",
            "eos_token": "</s>",
            "sep_token": "</s>",
            "cls_token": "<s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
    ),
    # transformers' generic TokenizersBackend: tokenizer.json as written (Llama 3, Mistral repos).
    "tokenizers": Family(
        name="tokenizers",
        class_name="PreTrainedTokenizerFast",
        model_input_names=("input_ids", "attention_mask"),
        default_special_tokens={},
    ),
    # LlamaTokenizer (Llama 2, TinyLlama, Mistral without config.json): SentencePiece-style BPE.
    "llama": Family(
        name="llama",
        class_name="LlamaTokenizer",
        model_input_names=("input_ids", "attention_mask"),
        default_special_tokens={"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
        padding_side="left",
    ),
    "qwen2": Family(
        name="qwen2",
        class_name="Qwen2Tokenizer",
        model_input_names=("input_ids", "attention_mask"),
        default_special_tokens={
            "unk_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
        },
    ),
}

# tokenizer_config.json's "tokenizer_class" (with or without the "Fast" suffix) -> family.
_FAMILY_OF_CLASS = {family.class_name.removesuffix("Fast"): family.name for family in FAMILIES.values()}
_FAMILY_OF_CLASS["TokenizersBackend"] = "tokenizers"

# config.json's model_type -> the family of the class transformers 5.24 registers for it
# (TOKENIZER_MAPPING_NAMES; "mistral" is TokenizersBackend when mistral-common is not installed).
# "llama" is not registered: with no tokenizer_class, a llama repo loads generically.
_FAMILY_OF_MODEL_TYPE = {
    "bert": "bert",
    "gpt2": "gpt2",
    "roberta": "roberta",
    "mistral": "tokenizers",
    "qwen2": "qwen2",
}
# Model types whose Hub tokenizer_class transformers replaces by the registered class
# (MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS), among those above.
_HUB_CLASS_OVERRIDDEN = {"qwen2"}


@dataclass
class TokenizerSettings:
    """Everything about a tokenizer that is not its vocabulary.

    `options` keeps the config's family-specific keys (do_lower_case, add_prefix_space, ...) as
    written, so assembly can tell an explicit value from a missing one.
    """

    family: Family
    special_tokens: dict[str, AddedToken] = field(default_factory=dict)
    extra_special_tokens: list[AddedToken] = field(default_factory=list)
    added_tokens: dict[int, AddedToken] = field(default_factory=dict)  # config's added_tokens_decoder
    model_max_length: int = UNLIMITED_LENGTH
    padding_side: str = "right"
    truncation_side: str = "right"
    clean_up_tokenization_spaces: bool = False
    model_input_names: tuple[str, ...] = ()
    chat_template: Union[None, str, dict[str, str]] = None  # one template, or several by name
    options: dict[str, Any] = field(default_factory=dict)


def read_text_file(path: Path) -> str:
    """The UTF-8 text of `path`, naming the file in the error when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TokenizerError(f"cannot read {path}: {error}") from error


def read_json_file(path: Path) -> dict:
    """Parse a JSON object from `path`, naming the file in the error when it is not one."""
    try:
        value = json.loads(read_text_file(path))
    except json.JSONDecodeError as error:
        raise TokenizerError(f"cannot read {path}: {error}") from error
    if not isinstance(value, dict):
        raise TokenizerError(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value


def family_for(
    tokenizer_config: dict, model_config: dict, *, tokenizer_json_text: Optional[str], where: str
) -> Optional[Family]:
    """The family transformers 5.24's AutoTokenizer would load; None when nothing names one.

    AutoTokenizer's rules, in its order: a LlamaTokenizer whose tokenizer.json is byte-level loads
    generically; a tokenizer_class that differs from the class registered for config.json's
    model_type loads generically when the registered class is generic, as the registered class when
    transformers overrides the Hub's class for that model type (qwen2), else as the Hub's class;
    with no tokenizer_class, the registered class, else (tokenizer.json present) the generic one.
    """
    class_name = tokenizer_config.get("tokenizer_class") or None
    model_type = model_config.get("model_type") or None
    registered = _FAMILY_OF_MODEL_TYPE.get(model_type)
    if class_name:
        if not isinstance(class_name, str):
            raise TokenizerError(f"{where}: tokenizer_class must be a string, not {class_name!r}")
        name = _FAMILY_OF_CLASS.get(class_name.removesuffix("Fast"))
        byte_level = tokenizer_json_text is not None and '"ByteLevel"' in tokenizer_json_text
        if name == "llama" and byte_level and model_type not in _HUB_CLASS_OVERRIDDEN:
            return FAMILIES["tokenizers"]
        if registered is not None and registered != name:
            if registered == "tokenizers":
                return FAMILIES["tokenizers"]
            if model_type in _HUB_CLASS_OVERRIDDEN:
                return FAMILIES[registered]
        if name is None:
            known = ", ".join(sorted(_FAMILY_OF_CLASS))
            raise TokenizerError(
                f"{where}: tokenizer_class {class_name!r} is not supported (supported: {known})"
            )
        return FAMILIES[name]
    if registered is not None:
        return FAMILIES[registered]
    if model_type and tokenizer_json_text is not None:
        return FAMILIES["tokenizers"]
    if model_type:
        known = ", ".join(sorted(_FAMILY_OF_MODEL_TYPE))
        raise TokenizerError(
            f"{where}: model_type {model_type!r} has no supported tokenizer without a tokenizer.json "
            f"(supported: {known})"
        )
    return None


def family_of_tokenizer_json(tokenizer_json: dict) -> Family:
    """The family a tokenizer.json's pipeline looks like, for a repo whose configs name none."""
    if tokenizer_json.get("model", {}).get("type") == "WordPiece":
        return FAMILIES["bert"]
    if (tokenizer_json.get("post_processor") or {}).get("type") == "RobertaProcessing":
        return FAMILIES["roberta"]
    return FAMILIES["tokenizers"]


def read_settings(
    family: Family,
    tokenizer_config: dict,
    special_tokens_map: Optional[dict],
    *,
    chat_template_files: Optional[dict[str, str]] = None,
    where: str,
) -> TokenizerSettings:
    """Merge the family's defaults, tokenizer_config.json and special_tokens_map.json.

    As in transformers, special_tokens_map.json is read only when the config has no
    `added_tokens_decoder`, and then its entries win over the config's. `chat_template_files`
    (name -> text, "default" for chat_template.jinja) win over the config's chat_template.
    """
    named = dict(family.default_special_tokens)
    extra: list = []
    added_tokens: dict[int, AddedToken] = {}
    sources = [tokenizer_config]
    if "added_tokens_decoder" in tokenizer_config:
        for index, token in tokenizer_config["added_tokens_decoder"].items():
            added_tokens[int(index)] = _added_token(token, special=None, where=f"{where} added_tokens_decoder")
    elif special_tokens_map:
        sources.append(special_tokens_map)
    for source in sources:
        for name in SPECIAL_TOKEN_NAMES:
            if name in source:
                named[name] = source[name]
        for key in ("additional_special_tokens", "extra_special_tokens"):
            if isinstance(source.get(key), list):
                extra = source[key]
    special_tokens = {
        name: _added_token(value, special=True, where=f"{where} {name}")
        for name, value in named.items()
        if value is not None
    }
    return TokenizerSettings(
        family=family,
        special_tokens=special_tokens,
        extra_special_tokens=[_added_token(value, special=True, where=where) for value in extra],
        added_tokens=added_tokens,
        model_max_length=int(tokenizer_config.get("model_max_length") or UNLIMITED_LENGTH),
        padding_side=tokenizer_config.get("padding_side", family.padding_side),
        truncation_side=tokenizer_config.get("truncation_side", "right"),
        clean_up_tokenization_spaces=bool(tokenizer_config.get("clean_up_tokenization_spaces", False)),
        model_input_names=_model_input_names(family, tokenizer_config, where=where),
        chat_template=_chat_template(tokenizer_config, chat_template_files or {}, where=where),
        options=dict(tokenizer_config),
    )


def _model_input_names(family: Family, tokenizer_config: dict, *, where: str) -> tuple[str, ...]:
    names = tokenizer_config.get("model_input_names")
    if names is None:
        return family.model_input_names
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise TokenizerError(f"{where}: model_input_names must be a list of strings, not {names!r}")
    return tuple(names)


def _chat_template(
    tokenizer_config: dict, files: dict[str, str], *, where: str
) -> Union[None, str, dict[str, str]]:
    """The chat template(s): one string, or {name: template} when a repo names several.

    As in transformers, template files replace the config's entry, and a lone "default" is a string.
    """
    if files:
        return files["default"] if list(files) == ["default"] else dict(files)
    value = tokenizer_config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("template"), str)
        for item in value
    ):
        return {item["name"]: item["template"] for item in value}
    raise TokenizerError(
        f"{where}: chat_template must be a string or a list of {{'name', 'template'}} objects, "
        f"not {type(value).__name__}"
    )


def _added_token(value: Any, *, special: Optional[bool], where: str) -> AddedToken:
    """A special token as transformers reads one: a plain string, or an AddedToken's fields as a dict."""
    if isinstance(value, AddedToken):
        return value
    if isinstance(value, str):
        return AddedToken(value, special=True) if special else AddedToken(value)
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        flags = ("single_word", "lstrip", "rstrip", "normalized", "special")
        fields = {key: value[key] for key in flags if key in value}
        if special is not None:
            fields["special"] = special
        return AddedToken(value["content"], **fields)
    raise TokenizerError(f"{where}: expected a token string or an object with 'content', got {value!r}")
