"""Chat templates: render a conversation with a repo's Jinja `chat_template`, as transformers does.

A chat template is untrusted code from the Hub, so it runs in jinja2's ImmutableSandboxedEnvironment
and sees only plain JSON-like data. Everything a template can observe matches transformers 5.24
(utils/chat_template_utils.py): `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension and
the `{% generation %}` block, the globals `raise_exception`, `strftime_now`, `dict` and a
`namespace` that refuses underscore names, and a `tojson` filter that does not escape HTML and
takes `indent`, `separators`, `sort_keys` and `ensure_ascii`. The variables are `messages`, `tools`,
`documents`, `add_generation_prompt`, the tokenizer's named special tokens (`bos_token`, ...) and
any extra keyword arguments.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, Optional, Union

import jinja2
import jinja2.ext
import jinja2.nodes
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bridge.tokenizer.settings import ChatTemplateError

# Messages may carry their reasoning under any of these names; templates read the first.
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
# Appended to the final message for continue_final_message, then cut from the rendered text there.
_CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: marks assistant text; records its span while tracking."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller) -> str:
        text = caller()
        spans = self.environment.generation_spans  # (blocks so far, spans) while tracking, else None
        if spans is not None:
            blocks, found = spans
            start = sum(map(len, blocks))
            found.append((start, start + len(text)))
        return text


class _Namespace(jinja2.utils.Namespace):
    """jinja2's namespace() without underscore attributes (a way into CPython internals)."""

    def __init__(*args, **kwargs):  # jinja2's own signature trick, so namespace(self=...) works
        self, args = args[0], args[1:]
        attributes = dict(*args, **kwargs)
        for name in attributes:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attributes)

    def __setitem__(self, name, value):
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"Chat templates cannot store underscore-prefixed attributes on a namespace, but got {name!r}. "
                "Please rename the attribute."
            )


class _Dict:
    """The template's `dict`: builds dicts, but exposes nothing of the dict type itself."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format):
    return datetime.now().strftime(format)


@lru_cache(maxsize=32)
def compile_template(source: str) -> jinja2.Template:
    """The compiled template (cached: the same template is compiled once)."""
    if tuple(int(part) for part in re.findall(r"\d+", jinja2.__version__)[:3]) < (3, 1, 6):
        raise ChatTemplateError(  # older releases have known sandbox escapes; templates are untrusted
            f"chat templates need jinja2>=3.1.6, found {jinja2.__version__}: pip install -U jinja2"
        )
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.generation_spans = None
    environment.filters["tojson"] = _tojson
    environment.globals.update(
        raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_Dict(), namespace=_Namespace
    )
    try:
        return environment.from_string(source)
    except jinja2.TemplateSyntaxError as error:
        raise ChatTemplateError(f"chat template does not compile (line {error.lineno}): {error.message}") from error


def render(
    template: str,
    conversations: list[list[dict]],
    *,
    tools: Optional[list[dict]] = None,
    documents: Optional[list[dict]] = None,
    add_generation_prompt: bool = False,
    continue_final_message: Union[bool, str] = False,
    track_generation: bool = False,
    variables: Optional[dict[str, Any]] = None,
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Each conversation rendered to text, and (with `track_generation`) its generation spans.

    `conversations` are lists of message dicts (or dataclasses / pydantic models); keys whose value
    is None are dropped, as transformers does. `continue_final_message` (True for "content", or a
    field name) leaves the last message open for the model to continue.
    """
    compiled = compile_template(template)
    if tools is not None and not all(isinstance(tool, dict) for tool in tools):
        raise ChatTemplateError("tools must be JSON schemas (dicts); Python functions are not converted here")
    if documents is not None and not all(isinstance(document, dict) for document in documents):
        raise ChatTemplateError("documents must be a list of dicts with 'title' and 'text' keys")
    context = dict(
        tools=plain_data(tools),
        documents=plain_data(documents),
        add_generation_prompt=add_generation_prompt,
        **plain_data(variables or {}),
    )
    texts, all_spans = [], []
    for conversation in conversations:
        messages = _with_reasoning_aliases(normalized_messages(conversation))
        final_text = None
        if continue_final_message:
            final_text = _tag_final_message(messages, template, continue_final_message)
        spans: list[tuple[int, int]] = []
        try:
            if track_generation:
                blocks: list[str] = []
                compiled.environment.generation_spans = (blocks, spans)
                try:
                    for block in compiled.generate(messages=messages, **context):
                        blocks.append(block)
                finally:
                    compiled.environment.generation_spans = None
                text = "".join(blocks)
            else:
                text = compiled.render(messages=messages, **context)
        except jinja2.TemplateError as error:  # raise_exception, undefined calls, sandbox refusals
            raise ChatTemplateError(f"chat template failed: {error}") from error
        except Exception as error:  # Python errors inside the template: 1 // 0, "a" + 1, deep recursion
            raise ChatTemplateError(f"chat template failed: {type(error).__name__}: {error}") from error
        if final_text is not None:
            text = _cut_at_tag(text, final_text)
        texts.append(text)
        all_spans.append(spans)
    return texts, all_spans


def normalized_messages(conversation: Any) -> list[dict]:
    """A conversation as plain message dicts, keys with a None value dropped."""
    messages = plain_data(getattr(conversation, "messages", conversation))
    if not isinstance(messages, list):
        raise ChatTemplateError(f"a conversation must be a list of messages, not {type(conversation).__name__}")
    for message in messages:
        if not isinstance(message, dict):
            raise ChatTemplateError(f"chat messages must be dicts, dataclasses or pydantic models, got {message!r}")
    return [{key: value for key, value in message.items() if value is not None} for message in messages]


def plain_data(value: Any) -> Any:
    """`value` rebuilt from JSON-like types only, as the sandbox should see it.

    Subclasses of str/int/float (enums, numpy scalars) become the base type; dataclasses and pydantic
    models become dicts; anything else (arrays, images) becomes an inert placeholder "<TypeName>".
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {plain_data(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(plain_data(item) for item in value)
    if isinstance(value, np.generic):  # np.bool_(False) must not become a truthy placeholder
        return plain_data(value.item())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain_data(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if callable(getattr(value, "model_dump", None)):
        return plain_data(value.model_dump())
    return f"<{type(value).__name__}>"


def _with_reasoning_aliases(messages: list[dict]) -> list[dict]:
    """A message's reasoning under any known name is also given as reasoning_content and thinking."""
    aliased = []
    for message in messages:
        reasoning = next((message[key] for key in REASONING_FIELDS if message.get(key) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        aliased.append(message)
    return aliased


def _tag_final_message(messages: list[dict], template: str, field: Union[bool, str]) -> str:
    """Mark the end of the final message's `field` so the rendering can be cut there; its text."""
    if not messages:
        raise ChatTemplateError("continue_final_message is set but the conversation is empty")
    field = field if isinstance(field, str) else "content"
    final = messages[-1]
    text = final.get(field)
    if text is None:
        raise ChatTemplateError(f'continue_final_message is set but the final message has no "{field}" to continue')
    fields = [field]
    if field in REASONING_FIELDS:  # copied under several names: tag every copy
        fields = [name for name in REASONING_FIELDS if final.get(name) == text]
    if not any(name in template for name in fields):
        raise ChatTemplateError(f'continue_final_message is set to "{field}", a field this chat template never reads')
    if isinstance(text, (list, tuple)):  # content blocks: continue the last text block
        for block in reversed(text):
            if isinstance(block, dict) and "text" in block:
                original = block["text"]
                block["text"] = original + _CONTINUE_TAG
                return original
        raise ChatTemplateError("continue_final_message is set but the final message has no text block to continue")
    for name in fields:
        final[name] = final[name] + _CONTINUE_TAG
    return text


def _cut_at_tag(rendered: str, final_text: str) -> str:
    tag = _CONTINUE_TAG.strip()
    if final_text.strip() not in rendered or tag not in rendered:
        raise ChatTemplateError(
            "continue_final_message is set but the final message does not appear in the rendered chat "
            "(the template changes or drops it)"
        )
    at = rendered.rindex(tag)
    if rendered[at : at + len(_CONTINUE_TAG)] == _CONTINUE_TAG:
        return rendered[:at]
    return rendered[:at].rstrip()  # the template trimmed the message's trailing space


def has_generation_blocks(template: str) -> bool:
    return re.search(r"\{\%-?\s*generation\s*-?\%\}", template) is not None
