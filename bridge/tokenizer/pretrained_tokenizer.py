"""`Tokenizer`: transformers' call interface over a `tokenizers.Tokenizer`.

`tok(texts, padding=True, return_tensors="np")` gives the dict transformers gives (input_ids,
token_type_ids for BERT, attention_mask, and offset_mapping on request), with the same padding,
truncation and special-token rules; `decode`/`batch_decode` undo it; `apply_chat_template`
renders and encodes a conversation with the repo's chat template. The heavy lifting is one
`encode_batch` call into the Rust library; the arrays are built straight from its encodings.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
from tokenizers import AddedToken, Encoding, normalizers, pre_tokenizers
from tokenizers import Tokenizer as BackendTokenizer

from bridge.tokenizer.settings import (
    LARGE_INTEGER,
    ChatTemplateError,
    SPECIAL_TOKEN_NAMES,
    TokenizerError,
    TokenizerSettings,
)

TextInput = Union[str, Sequence[str]]

_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
_PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")


class Tokenizer:
    """A pretrained tokenizer that encodes and decodes exactly as transformers' fast tokenizer does.

    Build one with `bridge.tokenizer.load_tokenizer`; `backend_tokenizer` is the underlying
    `tokenizers.Tokenizer` for anything this class does not expose.
    """

    def __init__(self, backend: BackendTokenizer, settings: TokenizerSettings):
        self._backend = backend
        self._settings = settings

    # ----- what it is -------------------------------------------------------------------------

    @property
    def backend_tokenizer(self) -> BackendTokenizer:
        return self._backend

    @property
    def family(self) -> str:
        """The transformers class it behaves as: "bert", "gpt2", "roberta", "llama", "qwen2", or
        "tokenizers" (the generic TokenizersBackend: tokenizer.json as written)."""
        return self._settings.family.name

    @property
    def model_input_names(self) -> list[str]:
        return list(self._settings.model_input_names or self._settings.family.model_input_names)

    @property
    def model_max_length(self) -> int:
        """The length `truncation=True` cuts to when no max_length is given (1e30: no limit)."""
        return self._settings.model_max_length

    @property
    def padding_side(self) -> str:
        """Where padding goes, "right" or "left" (settable, as in transformers)."""
        return self._settings.padding_side

    @padding_side.setter
    def padding_side(self, side: str) -> None:
        self._settings.padding_side = _checked_side("padding_side", side)

    @property
    def truncation_side(self) -> str:
        """Which end truncation cuts, "right" or "left" (settable, as in transformers)."""
        return self._settings.truncation_side

    @truncation_side.setter
    def truncation_side(self, side: str) -> None:
        self._settings.truncation_side = _checked_side("truncation_side", side)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (as transformers counts it)."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._backend.get_vocab(with_added_tokens=True)

    def __repr__(self) -> str:
        added = len(self) - self.vocab_size
        return f"Tokenizer(family={self.family!r}, vocab_size={self.vocab_size}, added={added})"

    # ----- special tokens ---------------------------------------------------------------------

    def _special_token(self, name: str) -> Optional[str]:
        token = self._settings.special_tokens.get(name)
        return None if token is None else token.content

    def _special_token_id(self, name: str) -> Optional[int]:
        token = self._special_token(name)
        return None if token is None else self.convert_tokens_to_ids(token)

    bos_token = property(lambda self: self._special_token("bos_token"))
    eos_token = property(lambda self: self._special_token("eos_token"))
    unk_token = property(lambda self: self._special_token("unk_token"))
    sep_token = property(lambda self: self._special_token("sep_token"))
    cls_token = property(lambda self: self._special_token("cls_token"))
    mask_token = property(lambda self: self._special_token("mask_token"))
    bos_token_id = property(lambda self: self._special_token_id("bos_token"))
    eos_token_id = property(lambda self: self._special_token_id("eos_token"))
    unk_token_id = property(lambda self: self._special_token_id("unk_token"))
    sep_token_id = property(lambda self: self._special_token_id("sep_token"))
    pad_token_id = property(lambda self: self._special_token_id("pad_token"))
    cls_token_id = property(lambda self: self._special_token_id("cls_token"))
    mask_token_id = property(lambda self: self._special_token_id("mask_token"))

    @property
    def pad_token(self) -> Optional[str]:
        """The padding token; settable to a token of the vocabulary (GPT-2: `tok.pad_token = tok.eos_token`)."""
        return self._special_token("pad_token")

    @pad_token.setter
    def pad_token(self, token: str) -> None:
        if self._backend.token_to_id(token) is None:
            raise TokenizerError(f"pad_token {token!r} is not in the vocabulary; pick one that is (eos_token?)")
        self._settings.special_tokens["pad_token"] = AddedToken(token, special=True)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens (bos_token ... mask_token) that are set, as transformers lists them."""
        tokens = self._settings.special_tokens
        return {name: tokens[name].content for name in SPECIAL_TOKEN_NAMES if name in tokens}

    @property
    def extra_special_tokens(self) -> list[str]:
        """The config's additional special tokens (transformers 5 calls them extra_special_tokens)."""
        return [token.content for token in self._settings.extra_special_tokens]

    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [token.content for token in self._settings.special_tokens.values()]
        tokens += [token.content for token in self._settings.extra_special_tokens]
        return list(dict.fromkeys(tokens))

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    # ----- tokens <-> ids ---------------------------------------------------------------------

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]) -> Union[int, list[int]]:
        """The id of each token; unknown tokens map to the unk token's id (None without one)."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(token) for token in tokens]

    def _token_to_id(self, token: str) -> Optional[int]:
        index = self._backend.token_to_id(token)
        if index is None and token != self.unk_token and self.unk_token is not None:
            return self._backend.token_to_id(self.unk_token)
        return index

    def convert_ids_to_tokens(
        self, ids: Union[int, Sequence[int]], skip_special_tokens: bool = False
    ) -> Union[Optional[str], list[Optional[str]]]:
        """The token of each id (a single id gives a single token)."""
        if isinstance(ids, (int, np.integer)):
            return self._backend.id_to_token(int(ids))
        skipped = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._backend.id_to_token(int(index)) for index in ids if int(index) not in skipped]

    def tokenize(self, text: str, text_pair: Optional[str] = None) -> list[str]:
        """The tokens of `text` (and `text_pair`), without special tokens."""
        self._configure_backend("do_not_pad", None, None, None, None)
        return self._backend.encode(text, text_pair, add_special_tokens=False).tokens

    # ----- encoding ---------------------------------------------------------------------------

    def __call__(
        self,
        text: TextInput,
        text_pair: Optional[TextInput] = None,
        *,
        add_special_tokens: bool = True,
        padding: Union[bool, str] = False,
        truncation: Union[bool, str, None] = None,
        max_length: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        padding_side: Optional[str] = None,
        return_tensors: Optional[str] = None,
        return_token_type_ids: Optional[bool] = None,
        return_attention_mask: Optional[bool] = None,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
    ) -> dict[str, Any]:
        """Encode one text (or pair) or a batch, as transformers' `tokenizer(...)` does.

        padding: False (none), True / "longest" (to the longest in the batch), "max_length" (to
        max_length, else model_max_length). truncation: False, True / "longest_first",
        "only_first", "only_second"; None truncates only when max_length is given without padding.
        return_tensors: None (Python lists; a single text gives un-nested lists), "np" or "pt"
        (int64 arrays of shape (batch, length); offset_mapping gets a trailing axis of 2).
        """
        is_batched = isinstance(text, (list, tuple))
        batch = self._batch_inputs(text, text_pair, is_batched)
        padding_strategy, truncation_strategy, max_length = self._strategies(
            padding, truncation, max_length, pad_to_multiple_of
        )
        self._configure_backend(
            padding_strategy, truncation_strategy, max_length, pad_to_multiple_of, padding_side
        )
        try:
            encodings = self._backend.encode_batch(batch, add_special_tokens=add_special_tokens)
        except Exception as error:  # e.g. truncation that cannot fit the special tokens
            raise TokenizerError(f"cannot encode: {error}") from error

        names = self.model_input_names
        fields = ["input_ids"]
        if return_token_type_ids if return_token_type_ids is not None else "token_type_ids" in names:
            fields.append("token_type_ids")
        if return_attention_mask if return_attention_mask is not None else "attention_mask" in names:
            fields.append("attention_mask")
        if return_special_tokens_mask:
            fields.append("special_tokens_mask")
        if return_offsets_mapping:
            fields.append("offset_mapping")
        if return_tensors is None:
            return _as_lists(encodings, fields, unbatch=not is_batched)
        return _as_tensors(encodings, fields, return_tensors)

    def encode(
        self,
        text: str,
        text_pair: Optional[str] = None,
        *,
        add_special_tokens: bool = True,
        truncation: Union[bool, str, None] = None,
        max_length: Optional[int] = None,
    ) -> list[int]:
        """The ids of one text (or pair), special tokens included: `tok(text)["input_ids"]`."""
        return self(
            text, text_pair, add_special_tokens=add_special_tokens, truncation=truncation, max_length=max_length
        )["input_ids"]

    def _batch_inputs(self, text: TextInput, text_pair: Optional[TextInput], is_batched: bool) -> list:
        texts = list(text) if is_batched else [text]
        if any(not isinstance(item, str) for item in texts):
            raise TokenizerError("text must be a str or a list of str")
        if not is_batched:
            # As in transformers, an empty text_pair counts as no pair.
            if text_pair and not isinstance(text_pair, str):
                raise TokenizerError("text_pair must be a str when text is a str")
            return [(text, text_pair)] if text_pair else texts
        if text_pair is None:
            return texts
        if isinstance(text_pair, str) or len(text_pair) != len(texts):
            raise TokenizerError(f"text_pair must be a list as long as text ({len(texts)} items)")
        if any(not isinstance(item, str) for item in text_pair):
            raise TokenizerError("text_pair must be a list of str")
        return list(zip(texts, text_pair))

    def _strategies(
        self,
        padding: Union[bool, str, None],
        truncation: Union[bool, str, None],
        max_length: Optional[int],
        pad_to_multiple_of: Optional[int],
    ) -> tuple[str, Optional[str], Optional[int]]:
        """transformers' rules turning padding/truncation/max_length into strategies and a length."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        if padding is True:
            padding_strategy = "longest"
        elif padding is False or padding is None:
            padding_strategy = "do_not_pad"
        elif padding in _PADDING_STRATEGIES:
            padding_strategy = padding
        else:
            raise TokenizerError(
                f"padding must be True, False or one of {_PADDING_STRATEGIES}, not {padding!r}"
            )
        if truncation is True:
            truncation_strategy = "longest_first"
        elif truncation is False or truncation is None or truncation == "do_not_truncate":
            truncation_strategy = None
        elif truncation in _TRUNCATION_STRATEGIES:
            truncation_strategy = truncation
        else:
            raise TokenizerError(
                f"truncation must be True, False or one of {_TRUNCATION_STRATEGIES}, not {truncation!r}"
            )
        unlimited = self.model_max_length > LARGE_INTEGER
        if max_length is None:
            if padding_strategy == "max_length":
                if unlimited:
                    padding_strategy = "do_not_pad"
                else:
                    max_length = self.model_max_length
            if truncation_strategy is not None:
                if unlimited:
                    truncation_strategy = None
                else:
                    max_length = self.model_max_length
        if padding_strategy != "do_not_pad" and self.pad_token_id is None:
            raise TokenizerError(
                f"cannot pad: this tokenizer ({self.family} family) has no pad token (its config sets no "
                f"pad_token; tok.pad_token = tok.eos_token is the usual choice for decoders)"
            )
        if (
            truncation_strategy is not None
            and padding_strategy != "do_not_pad"
            and pad_to_multiple_of is not None
            and max_length is not None
            and max_length % pad_to_multiple_of != 0
        ):
            raise TokenizerError(
                f"truncation length {max_length} is not a multiple of pad_to_multiple_of {pad_to_multiple_of}"
            )
        return padding_strategy, truncation_strategy, max_length

    def _configure_backend(
        self,
        padding_strategy: str,
        truncation_strategy: Optional[str],
        max_length: Optional[int],
        pad_to_multiple_of: Optional[int],
        padding_side: Optional[str],
    ) -> None:
        """Set the backend's padding and truncation for this call (touching it only on change)."""
        if truncation_strategy is None:
            if self._backend.truncation is not None:
                self._backend.no_truncation()
        else:
            target = {
                "max_length": max_length,
                "stride": 0,
                "strategy": truncation_strategy,
                "direction": self.truncation_side,
            }
            if self._backend.truncation != target:
                self._backend.enable_truncation(**target)
        if padding_strategy == "do_not_pad":
            if self._backend.padding is not None:
                self._backend.no_padding()
        else:
            target = {
                "length": max_length if padding_strategy == "max_length" else None,
                "pad_to_multiple_of": pad_to_multiple_of,
                "pad_id": self.pad_token_id,
                "pad_token": self.pad_token,
                "pad_type_id": 0,
                "direction": padding_side or self.padding_side,
            }
            if self._backend.padding != target:
                self._backend.enable_padding(**target)

    # ----- chat -------------------------------------------------------------------------------

    @property
    def chat_template(self) -> Union[None, str, dict[str, str]]:
        """The repo's chat template (tokenizer_config.json or chat_template.jinja), or {name: template}
        when it has several; settable."""
        return self._settings.chat_template

    @chat_template.setter
    def chat_template(self, template: Union[None, str, dict[str, str]]) -> None:
        if not (template is None or isinstance(template, (str, dict))):
            raise TokenizerError(f"chat_template must be a str, a dict of str or None, not {type(template).__name__}")
        self._settings.chat_template = template

    def get_chat_template(self, chat_template: Optional[str] = None, tools: Optional[list] = None) -> str:
        """The template text `apply_chat_template` uses: `chat_template` itself (a template or, for
        a tokenizer with several, a name), else "tool_use" when tools are given and it exists, else
        "default"."""
        own = self._settings.chat_template
        if isinstance(own, dict):
            if chat_template is not None and chat_template in own:
                return own[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in own:
                    return own["tool_use"]
                if "default" in own:
                    return own["default"]
                raise ChatTemplateError(
                    f"this tokenizer has several chat templates and none named 'default': pass "
                    f"chat_template= one of {sorted(own)}"
                )
        if chat_template is not None:
            return chat_template
        if own is None:
            raise ChatTemplateError(
                "this tokenizer has no chat template (no chat_template in tokenizer_config.json and no "
                "chat_template.jinja): pass chat_template=, or set tokenizer.chat_template"
            )
        return own

    def apply_chat_template(
        self,
        conversation: Union[list[dict[str, Any]], list[list[dict[str, Any]]]],
        tools: Optional[list[dict]] = None,
        documents: Optional[list[dict]] = None,
        chat_template: Optional[str] = None,
        add_generation_prompt: bool = False,
        continue_final_message: Union[bool, str] = False,
        tokenize: bool = True,
        padding: Union[bool, str] = False,
        truncation: bool = False,
        max_length: Optional[int] = None,
        return_tensors: Optional[str] = None,
        return_dict: bool = True,
        return_assistant_tokens_mask: bool = False,
        tokenizer_kwargs: Optional[dict[str, Any]] = None,
        **kwargs: Any,
    ) -> Union[str, list[str], list[int], list[list[int]], dict[str, Any]]:
        """Render a conversation (or a batch of them) with the chat template, and encode it.

        As transformers 5.24: `conversation` is a list of {"role", "content", ...} messages, or a
        list of such lists. tokenize=False gives the text (a list for a batch); tokenize=True gives
        the `tokenizer(text, add_special_tokens=False, padding=..., truncation=..., max_length=...,
        return_tensors=...)` dict, or with return_dict=False its input_ids. add_generation_prompt
        opens an assistant turn; continue_final_message leaves the last message open (True for its
        "content", or a field name). `tools` (JSON schemas), `documents` and other keyword
        arguments reach the template as variables, as do the special tokens (bos_token, ...).
        return_assistant_tokens_mask adds "assistant_masks": 1 for tokens inside the template's
        {% generation %} blocks. A template that fails raises ChatTemplateError with its message.
        """
        if not tokenize:
            return_dict = False
        if return_assistant_tokens_mask and not (return_dict and tokenize):
            raise ChatTemplateError("return_assistant_tokens_mask=True needs return_dict=True and tokenize=True")
        if continue_final_message and add_generation_prompt:
            raise ChatTemplateError(
                "continue_final_message and add_generation_prompt cannot be combined: the first continues "
                "the last message, the second starts a new assistant message"
            )
        if continue_final_message and return_assistant_tokens_mask:
            raise ChatTemplateError("continue_final_message cannot be combined with return_assistant_tokens_mask")
        from bridge.tokenizer import chat  # jinja2 is imported only when a template is rendered

        template = self.get_chat_template(chat_template, tools)
        if not isinstance(conversation, (list, tuple)) or len(conversation) == 0:
            raise ChatTemplateError("cannot apply a chat template to an empty conversation: give at least one message")
        first = conversation[0]
        is_batched = isinstance(first, (list, tuple)) or hasattr(first, "messages")
        conversations = list(conversation) if is_batched else [conversation]
        texts, spans = chat.render(
            template,
            conversations,
            tools=tools,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            track_generation=return_assistant_tokens_mask,
            variables={**self.special_tokens_map, **kwargs},  # kwargs win over the special tokens
        )
        if not tokenize:
            return texts if is_batched else texts[0]
        call = dict(tokenizer_kwargs or {})
        if return_assistant_tokens_mask:
            asked_offsets = call.get("return_offsets_mapping", False)
            call["return_offsets_mapping"] = True
        encoded = self(
            texts if is_batched else texts[0],
            add_special_tokens=False,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
            **call,
        )
        if return_assistant_tokens_mask:
            offsets = encoded["offset_mapping"] if asked_offsets else encoded.pop("offset_mapping")
            masks = _assistant_masks(offsets, spans, batched=is_batched or return_tensors is not None)
            if return_tensors is not None:
                encoded["assistant_masks"] = _as_tensor(masks, return_tensors)
            else:
                encoded["assistant_masks"] = masks if is_batched else masks[0]
        return encoded if return_dict else encoded["input_ids"]

    # ----- decoding ---------------------------------------------------------------------------

    def decode(
        self,
        token_ids: Union[int, Sequence[int], Sequence[Sequence[int]], np.ndarray, Any],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: Optional[bool] = None,
    ) -> Union[str, list[str]]:
        """The text of `token_ids`: a list, numpy array or torch tensor of ids, or one id.

        As in transformers 5, a batch (a list of lists, or a 2-D array) gives a list of texts.
        """
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        is_batch = isinstance(token_ids, (list, tuple)) and len(token_ids) > 0
        if is_batch and isinstance(token_ids[0], (list, tuple, np.ndarray)):
            return self.batch_decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        text = self._backend.decode(_id_list(token_ids), skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self._cleans_up(clean_up_tokenization_spaces) else text

    def batch_decode(
        self,
        sequences: Union[Sequence[Sequence[int]], np.ndarray, Any],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: Optional[bool] = None,
    ) -> list[str]:
        """`decode` for each row of `sequences`."""
        if hasattr(sequences, "tolist"):  # a 2-D numpy array or torch tensor: rows of Python ints
            rows = sequences.tolist()
        else:
            rows = [_id_list(row) for row in sequences]
        texts = self._backend.decode_batch(rows, skip_special_tokens=skip_special_tokens)
        if not self._cleans_up(clean_up_tokenization_spaces):
            return texts
        return [_clean_up_tokenization(text) for text in texts]

    def _cleans_up(self, requested: Optional[bool]) -> bool:
        """Whether decoding applies transformers' clean_up_tokenization, which it never does for BPE."""
        wanted = self._settings.clean_up_tokenization_spaces if requested is None else requested
        return bool(wanted) and type(self._backend.model).__name__ != "BPE"

    # ----- saving -----------------------------------------------------------------------------

    def save_pretrained(self, directory: Union[str, os.PathLike]) -> tuple[Path, ...]:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `directory`.

        The chat template goes into tokenizer_config.json ("chat_template": a string, or a list of
        {"name", "template"} for several), which every transformers version since 4.34 reads.

        transformers' AutoTokenizer.from_pretrained(directory) loads the result back to a tokenizer
        that encodes identically. Each file is written to a temporary name and renamed into place
        only once all three are written, so a failure leaves no half-written file behind.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tokenizer_json = json.loads(self._backend.to_str())
        tokenizer_json["padding"] = None  # per-call state, not part of the tokenizer
        tokenizer_json["truncation"] = None
        contents = {
            "tokenizer.json": json.dumps(tokenizer_json, indent=2, ensure_ascii=False),
            "tokenizer_config.json": _json_text(self._tokenizer_config()),
            "special_tokens_map.json": _json_text(self._special_tokens_map_file()),
        }
        return _write_files_atomically(directory, contents)

    def _tokenizer_config(self) -> dict[str, Any]:
        """tokenizer_config.json: class, lengths, sides, and the options the backend really uses."""
        config: dict[str, Any] = {"tokenizer_class": self._settings.family.class_name}
        if self.model_max_length <= LARGE_INTEGER:  # else unlimited: transformers' default
            config["model_max_length"] = self.model_max_length
        config["padding_side"] = self.padding_side
        config["truncation_side"] = self.truncation_side
        config["clean_up_tokenization_spaces"] = self._settings.clean_up_tokenization_spaces
        config["model_input_names"] = self.model_input_names
        config.update(self._family_options())
        # A family default the tokenizer does without (Qwen2's unk_token) is written as null.
        config.update({name: None for name in self._settings.family.default_special_tokens})
        config.update(self.special_tokens_map)
        if self.extra_special_tokens:
            config["extra_special_tokens"] = self.extra_special_tokens
        template = self._settings.chat_template
        if isinstance(template, dict):
            config["chat_template"] = [{"name": name, "template": text} for name, text in template.items()]
        elif template is not None:
            config["chat_template"] = template
        return config

    def _family_options(self) -> dict[str, Any]:
        """The family-specific options, read back from the backend so that they describe it truly."""
        options: dict[str, Any] = {}
        normalizer, pre_tokenizer = self._backend.normalizer, self._backend.pre_tokenizer
        if isinstance(normalizer, normalizers.BertNormalizer):
            options["do_lower_case"] = normalizer.lowercase
            options["strip_accents"] = normalizer.strip_accents
            options["tokenize_chinese_chars"] = normalizer.handle_chinese_chars
        if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
            options["add_prefix_space"] = pre_tokenizer.add_prefix_space
        if isinstance(pre_tokenizer, pre_tokenizers.Metaspace) and self.family == "llama":
            # LlamaTokenizer rebuilds its Metaspace from these two: always = legacy, first = not legacy.
            options["add_prefix_space"] = pre_tokenizer.prepend_scheme != "never"
            options["legacy"] = pre_tokenizer.prepend_scheme == "always"
        if self.family == "qwen2":
            options["add_prefix_space"] = bool(self._settings.options.get("add_prefix_space", False))
        if self.family == "roberta":
            options["trim_offsets"] = self._settings.options.get("trim_offsets", True)
        for key in ("add_bos_token", "add_eos_token"):
            if key in self._settings.options:
                options[key] = self._settings.options[key]
        return options

    def _special_tokens_map_file(self) -> dict[str, Any]:
        """special_tokens_map.json, each token with its AddedToken flags (lstrip on <mask>, ...)."""
        flags = {token.content: token for token in self._backend.get_added_tokens_decoder().values()}

        def describe(content: str) -> dict[str, Any]:
            token = flags.get(content)
            return {
                "content": content,
                "lstrip": bool(token and token.lstrip),
                "normalized": bool(token and token.normalized),
                "rstrip": bool(token and token.rstrip),
                "single_word": bool(token and token.single_word),
            }

        result: dict[str, Any] = {name: describe(token) for name, token in self.special_tokens_map.items()}
        if self.extra_special_tokens:
            result["additional_special_tokens"] = self.extra_special_tokens  # plain strings: read by v4 and v5
        return result


# transformers' PreTrainedTokenizerBase.clean_up_tokenization, in its order.
_CLEAN_UP_REPLACEMENTS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def _checked_side(name: str, side: str) -> str:
    if side not in ("left", "right"):
        raise TokenizerError(f"{name} must be 'left' or 'right', not {side!r}")
    return side


def _clean_up_tokenization(text: str) -> str:
    for spaced, joined in _CLEAN_UP_REPLACEMENTS:
        text = text.replace(spaced, joined)
    return text


def _id_list(token_ids: Any) -> list[int]:
    """A flat list of Python ints from an int, a list, a numpy array or a torch tensor."""
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        return [token_ids]
    return list(map(int, token_ids))


def _field_of(encoding: Encoding, field: str):
    if field == "input_ids":
        return encoding.ids
    if field == "token_type_ids":
        return encoding.type_ids
    if field == "attention_mask":
        return encoding.attention_mask
    if field == "special_tokens_mask":
        return encoding.special_tokens_mask
    return encoding.offsets


def _as_lists(encodings: list[Encoding], fields: list[str], *, unbatch: bool) -> dict[str, Any]:
    output = {field: [_field_of(encoding, field) for encoding in encodings] for field in fields}
    if unbatch:
        return {field: rows[0] for field, rows in output.items()}
    return output


def _as_tensors(encodings: list[Encoding], fields: list[str], return_tensors: str) -> dict[str, Any]:
    """int64 arrays (batch, length[, 2]) from rows of equal length.

    Rows of different lengths (no padding) give, as in transformers, a 1-D numpy object array of
    per-row arrays for "np", and an error for "pt".
    """
    if return_tensors not in ("np", "pt"):
        raise TokenizerError(f"return_tensors must be None, 'np' or 'pt', not {return_tensors!r}")
    lengths = {len(encoding) for encoding in encodings}
    if len(lengths) > 1 and return_tensors == "pt":
        raise TokenizerError(
            f"cannot stack sequences of lengths {sorted(lengths)} into one tensor: pass padding=True "
            f"(and truncation=True for inputs longer than the model)"
        )
    length = next(iter(lengths)) if len(lengths) == 1 else 0
    output = {}
    for field in fields:
        rows = [_field_of(encoding, field) for encoding in encodings]
        if len(lengths) > 1:
            output[field] = _ragged_array(rows, field)
        else:
            shape = (len(rows), length, 2) if field == "offset_mapping" else (len(rows), length)
            output[field] = np.array(rows, dtype=np.int64).reshape(shape)
    if return_tensors == "pt":
        import torch  # only when asked for: torch is heavy to import

        output = {field: torch.from_numpy(array) for field, array in output.items()}
    return output


def _ragged_array(rows: list, field: str) -> np.ndarray:
    ragged = np.empty(len(rows), dtype=object)
    for index, row in enumerate(rows):
        shape = (len(row), 2) if field == "offset_mapping" else (len(row),)
        ragged[index] = np.array(row, dtype=np.int64).reshape(shape)
    return ragged


def _assistant_masks(offsets: Any, spans: list[list[tuple[int, int]]], *, batched: bool) -> list[list[int]]:
    """1 for each token overlapping a {% generation %} span of its row (spans and offsets are in order)."""
    rows = offsets.tolist() if hasattr(offsets, "tolist") else offsets
    rows = rows if batched else [rows]
    masks = []
    for row, row_spans in zip(rows, spans):
        mask, at = [0] * len(row), 0
        for index, (start, end) in enumerate(row):
            while at < len(row_spans) and start >= row_spans[at][1]:
                at += 1
            if at == len(row_spans):
                break
            if end > row_spans[at][0]:
                mask[index] = 1
        masks.append(mask)
    return masks


def _as_tensor(rows: list[list[int]], return_tensors: str):
    array = np.array(rows, dtype=np.int64)
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(array)
    return array


def _json_text(value: dict) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _write_files_atomically(directory: Path, contents: dict[str, str]) -> tuple[Path, ...]:
    """Write every file under a temporary name, then rename them all into place (none on error)."""
    from pickle_io.atomic_file import replacing

    with contextlib.ExitStack() as renames_on_success:
        for name, text in contents.items():
            temporary = renames_on_success.enter_context(replacing(directory / name))
            temporary.write_text(text, encoding="utf-8")
    return tuple(directory / name for name in contents)
