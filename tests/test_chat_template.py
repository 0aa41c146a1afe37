"""`Tokenizer.apply_chat_template` against transformers' on the same tokenizer directories.

The oracle is transformers 5.24 (`AutoTokenizer.from_pretrained(directory).apply_chat_template`).
The templates (tests/tokenizer_families.py) are written in the style of each family's own: Llama 3
(system header, tools as JSON, strftime_now), Llama 2 [INST] <<SYS>>, Mistral [INST], Qwen2.5
ChatML with tools and tool calls, SmolLM ChatML, TinyLlama's Zephyr, plus one that uses every helper
(generation blocks, loop controls, namespace, dict, tojson options).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jinja2
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import tokenizer_families as families
from bridge.errors import BridgeError
from bridge.tokenizer import ChatTemplateError, load_tokenizer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city, in °C <as JSON>",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "e.g. São Paulo"}},
            "required": ["city"],
        },
    },
}
SYSTEM = {"role": "system", "content": "You are a helpful assistant. Réponds en français & <b>gras</b>."}
USER = {"role": "user", "content": "What is the weather in Paris? 中文 😀"}
ASSISTANT = {"role": "assistant", "content": "  It is sunny, 21 °C.  "}
USER_2 = {"role": "user", "content": "And tomorrow?\n\nThanks!"}
TOOL_CALL = {
    "role": "assistant",
    "content": None,  # as OpenAI-style clients send it: dropped, as transformers does
    "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
}
TOOL_RESULT = {"role": "tool", "content": '{"temperature": 21, "sky": "clear"}'}

CONVERSATIONS = {
    "user": [USER],
    "system-user": [SYSTEM, USER],
    "multi-turn": [SYSTEM, USER, ASSISTANT, USER_2],
    "no-system-multi-turn": [USER, ASSISTANT, USER_2],
    "ends-with-assistant": [USER, ASSISTANT],
}
TOOL_CONVERSATION = [SYSTEM, USER, TOOL_CALL, TOOL_RESULT, {"role": "assistant", "content": "Sunny."}]


@pytest.fixture(scope="module")
def chat_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chat")
    dirs = {
        "llama3": families.write_llama3(root / "llama3"),
        "qwen2": families.write_qwen2(root / "qwen2"),
        "smollm": families.write_smollm(root / "smollm"),
        "llama2": families.write_sentencepiece_family(
            root / "llama2",
            style="normalizer",
            model_type="llama",
            config={"add_bos_token": True, "legacy": False, "chat_template": families.LLAMA2_TEMPLATE},
        ),
        "mistral": families.write_sentencepiece_family(
            root / "mistral",
            style="metaspace",
            model_type="mistral",
            config={"add_bos_token": True, "legacy": True, "chat_template": families.MISTRAL_TEMPLATE},
        ),
        "tinyllama": families.write_sentencepiece_family(
            root / "tinyllama",
            style="normalizer",
            model_type="llama",
            config={"add_bos_token": True, "legacy": False, "chat_template": families.ZEPHYR_TEMPLATE,
                    "pad_token": "</s>"},
            extra_specials=("<|user|>", "<|assistant|>", "<|system|>"),
        ),
        "features": families.write_qwen2(root / "features", chat_template=families.FEATURES_TEMPLATE),
    }
    return dirs


_LOADED: dict[str, tuple] = {}


def _pair(chat_dirs, name):
    if name not in _LOADED:
        _LOADED[name] = (load_tokenizer(chat_dirs[name]), AutoTokenizer.from_pretrained(chat_dirs[name]))
    return _LOADED[name]


FAMILIES = ("llama3", "qwen2", "smollm", "llama2", "mistral", "tinyllama")


def _assert_same(ours, theirs, context):
    if isinstance(theirs, (str, list)):
        assert ours == theirs, context
        return
    theirs = dict(theirs)
    assert list(ours) == list(theirs), context
    for key, expected in theirs.items():
        if isinstance(expected, (np.ndarray, torch.Tensor)):
            assert type(ours[key]) is type(expected), (context, key)
            assert ours[key].tolist() == expected.tolist(), (context, key)
        else:
            assert ours[key] == expected, (context, key)


def _both(pair, conversation, **options):
    """Both renderings; a template that raises must raise in both, with the same message."""
    ours, theirs = pair
    try:
        expected = theirs.apply_chat_template(conversation, **options)
    except jinja2.TemplateError as error:
        with pytest.raises(ChatTemplateError) as raised:
            ours.apply_chat_template(conversation, **options)
        assert str(error) in str(raised.value)
        return None
    actual = ours.apply_chat_template(conversation, **options)
    _assert_same(actual, expected, options)
    return actual


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_text_and_ids_match(chat_dirs, family, conversation, add_generation_prompt):
    pair = _pair(chat_dirs, family)
    messages = CONVERSATIONS[conversation]
    options = dict(add_generation_prompt=add_generation_prompt, date_string="26 Jul 2024")
    text = _both(pair, messages, tokenize=False, **options)
    _both(pair, messages, tokenize=True, return_dict=False, **options)
    _both(pair, messages, **options)  # transformers 5's default: tokenize=True, return_dict=True
    assert isinstance(text, str) and text  # rendered, not refused


@pytest.mark.parametrize("family", ("llama3", "qwen2"))
def test_tools_and_tool_calls_match(chat_dirs, family):
    pair = _pair(chat_dirs, family)
    for conversation in ([SYSTEM, USER], [USER], TOOL_CONVERSATION, TOOL_CONVERSATION[1:3]):
        options = dict(tools=[WEATHER_TOOL], add_generation_prompt=True, date_string="1 Jan 2025")
        text = _both(pair, conversation, tokenize=False, **options)
        _both(pair, conversation, return_dict=False, **options)
        assert text
        if family == "qwen2":
            assert json.dumps(WEATHER_TOOL, ensure_ascii=False) in text  # tojson: no HTML escaping, no \u escapes
    _both(pair, TOOL_CONVERSATION, tokenize=False, date_string="1 Jan 2025")  # tool calls without tools


def test_strftime_now_renders_today(chat_dirs):
    pair = _pair(chat_dirs, "llama3")
    text = _both(pair, [USER], tokenize=False)
    assert "Today Date: " in text


@pytest.mark.parametrize("family", FAMILIES)
def test_batches_with_padding_and_tensors_match(chat_dirs, family):
    ours, theirs = _pair(chat_dirs, family)
    batch = [CONVERSATIONS["user"], CONVERSATIONS["multi-turn"], CONVERSATIONS["ends-with-assistant"]]
    options = dict(add_generation_prompt=True, date_string="26 Jul 2024")
    _both((ours, theirs), batch, tokenize=False, **options)
    _both((ours, theirs), batch, return_dict=False, **options)
    if ours.pad_token is None:
        return
    for return_tensors in (None, "np", "pt"):
        for padding_options in (dict(padding=True), dict(padding="max_length", truncation=True, max_length=40)):
            _both((ours, theirs), batch, return_tensors=return_tensors, **padding_options, **options)
    _both((ours, theirs), batch, padding=True, return_tensors="np", tokenizer_kwargs={"padding_side": "right"}, **options)


@pytest.mark.parametrize("family", FAMILIES)
def test_continue_final_message_matches(chat_dirs, family):
    pair = _pair(chat_dirs, family)
    prefill = [USER, {"role": "assistant", "content": "The weather in Paris is "}]
    _both(pair, prefill, tokenize=False, continue_final_message=True, date_string="26 Jul 2024")
    _both(pair, prefill, return_dict=False, continue_final_message=True, date_string="26 Jul 2024")


def test_template_errors_carry_the_templates_message(chat_dirs):
    for family in ("llama2", "mistral"):  # roles that do not alternate
        pair = _pair(chat_dirs, family)
        assert _both(pair, [USER, USER_2], tokenize=False) is None
    ours, _ = _pair(chat_dirs, "llama2")
    with pytest.raises(ChatTemplateError, match="roles must alternate") as raised:
        ours.apply_chat_template([USER, USER_2])
    assert isinstance(raised.value, BridgeError)
    pair = _pair(chat_dirs, "llama3")
    assert _both(pair, [{"role": "narrator", "content": "x"}], tokenize=False, date_string="x") is None


def test_no_chat_template_says_so(tmp_path):
    directory = families.write_sentencepiece_family(tmp_path / "base", style="metaspace", config={})
    ours, theirs = load_tokenizer(directory), AutoTokenizer.from_pretrained(directory)
    assert ours.chat_template is None and theirs.chat_template is None
    with pytest.raises(ValueError):
        theirs.apply_chat_template([USER])
    with pytest.raises(ChatTemplateError, match="no chat template"):
        ours.apply_chat_template([USER])
    # A template passed in works without one of its own, as in transformers.
    template = families.MISTRAL_TEMPLATE
    _both((ours, theirs), [USER, ASSISTANT], tokenize=False, chat_template=template)
    _both((ours, theirs), [USER, ASSISTANT], return_dict=False, chat_template=template)


def test_template_helpers_match(chat_dirs):
    """Generation blocks, loop controls, namespace(), dict(), tojson's options, extra variables."""
    pair = _pair(chat_dirs, "features")
    conversation = [
        SYSTEM,
        {"role": "skip", "content": "not shown"},
        USER,
        ASSISTANT,
        USER_2,
        {"role": "assistant", "content": "Rain, probably."},
        {"role": "stop", "content": "the loop breaks here"},
        {"role": "user", "content": "never rendered"},
    ]
    for options in (
        dict(tokenize=False),
        dict(tokenize=False, add_generation_prompt=True, extra_flag="on"),
        dict(return_dict=False, extra_flag=np.int64(3)),  # numpy scalars reach the template as ints
        dict(return_assistant_tokens_mask=True),
        dict(return_assistant_tokens_mask=True, return_tensors="np"),
        dict(return_assistant_tokens_mask=True, tokenizer_kwargs={"return_offsets_mapping": True}),
    ):
        _both(pair, conversation, **options)
    ours = pair[0]
    masked = ours.apply_chat_template(conversation, return_assistant_tokens_mask=True)
    assert 0 < sum(masked["assistant_masks"]) < len(masked["input_ids"])
    batch = [conversation, conversation[:4]]
    _both(pair, batch, return_assistant_tokens_mask=True, padding=True, return_tensors="pt")
    _both(pair, batch, return_assistant_tokens_mask=True)


def test_message_objects_and_extra_data_become_plain_data(chat_dirs):
    """Dataclass messages, None values, reasoning aliases, unknown objects as placeholders."""

    @dataclasses.dataclass
    class Message:
        role: str
        content: str
        thinking: str = None

    template = (
        "{% for m in messages %}{{ m.role }}:{{ m.content }}|{{ m.reasoning_content | default('-') }}"
        "|{{ m.thinking | default('-') }}|{{ m.keys() | list | tojson }}\n{% endfor %}"
        "{{ obj }} {{ flag }} {{ documents | tojson }}"
    )
    pair = _pair(chat_dirs, "qwen2")
    conversation = [Message("user", "hi"), Message("assistant", "hello", thinking="greet back"),
                    {"role": "user", "content": "ok", "reasoning": "old name", "tool_calls": None}]
    documents = [{"title": "Doc", "text": "Paris is in France."}]
    _both(pair, conversation, chat_template=template, tokenize=False, obj=object(), flag=np.bool_(False),
          documents=documents)


def test_continue_final_message_errors(chat_dirs):
    ours, _ = _pair(chat_dirs, "qwen2")
    with pytest.raises(ChatTemplateError, match="cannot be combined"):
        ours.apply_chat_template([USER], add_generation_prompt=True, continue_final_message=True)
    thinking = {"role": "assistant", "content": "x", "reasoning_content": "y"}
    with pytest.raises(ChatTemplateError, match="never reads"):
        ours.apply_chat_template([USER, thinking], continue_final_message="reasoning_content")
    with pytest.raises(ChatTemplateError, match="empty conversation"):
        ours.apply_chat_template([])


def test_sandbox_refuses_what_transformers_refuses(chat_dirs):
    ours, theirs = _pair(chat_dirs, "qwen2")
    hostile = (
        "{{ messages.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{% set ns = namespace() %}{% set ns._secret = 1 %}{{ ns._secret }}",
        "{{ messages.append({'role': 'x'}) }}",  # immutable: no mutating methods
        "{{ dict.__init__ }}",
    )
    for template in hostile:
        try:
            expected = theirs.apply_chat_template([USER], chat_template=template, tokenize=False)
        except jinja2.exceptions.TemplateError:
            with pytest.raises(ChatTemplateError):
                ours.apply_chat_template([USER], chat_template=template, tokenize=False)
        else:  # the sandbox renders the attribute as undefined (empty)
            assert ours.apply_chat_template([USER], chat_template=template, tokenize=False) == expected, template
    for template in ("{{ 1 // 0 }}", "{{ 'a' + 1 }}", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"):
        with pytest.raises(ChatTemplateError, match="chat template failed"):
            ours.apply_chat_template([USER], chat_template=template, tokenize=False)
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ours.apply_chat_template([USER], chat_template="{% for m in messages %}unclosed")


def test_several_named_templates(tmp_path):
    """A list of {name, template} in the config, chat_template.jinja and additional_chat_templates/."""
    directory = families.write_qwen2(tmp_path / "named")
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = [
        {"name": "default", "template": families.SMOLLM_TEMPLATE},
        {"name": "tool_use", "template": families.CHATML_TOOLS_TEMPLATE},
    ]
    config_path.write_text(json.dumps(config))
    pair = load_tokenizer(directory), AutoTokenizer.from_pretrained(directory)
    assert pair[0].chat_template == pair[1].chat_template
    _both(pair, [USER], tokenize=False)
    _both(pair, [USER], tokenize=False, tools=[WEATHER_TOOL])  # picks "tool_use"
    _both(pair, [USER], tokenize=False, chat_template="default", tools=[WEATHER_TOOL])

    # Files win over the config, as in transformers: one file alone is the single template.
    (directory / "chat_template.jinja").write_text(families.ZEPHYR_TEMPLATE, encoding="utf-8")
    pair = load_tokenizer(directory), AutoTokenizer.from_pretrained(directory)
    assert pair[0].chat_template == pair[1].chat_template == families.ZEPHYR_TEMPLATE
    (directory / "additional_chat_templates").mkdir()
    (directory / "additional_chat_templates" / "tool_use.jinja").write_text(families.CHATML_TOOLS_TEMPLATE)
    pair = load_tokenizer(directory), AutoTokenizer.from_pretrained(directory)
    assert pair[0].chat_template == pair[1].chat_template
    _both(pair, [USER], tokenize=False, tools=[WEATHER_TOOL])

    # Several templates and no default: the error lists the names.
    config["chat_template"] = [{"name": "tool_use", "template": families.CHATML_TOOLS_TEMPLATE}]
    other = families.write_qwen2(tmp_path / "no-default")
    (other / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ChatTemplateError, match="tool_use"):
        load_tokenizer(other).apply_chat_template([USER])


@pytest.mark.parametrize("family", ("llama3", "llama2", "qwen2"))
def test_save_pretrained_keeps_the_chat_template(chat_dirs, family, tmp_path):
    ours, theirs = _pair(chat_dirs, family)
    ours.save_pretrained(tmp_path)
    reloaded, ours_again = AutoTokenizer.from_pretrained(tmp_path), load_tokenizer(tmp_path)
    for conversation in CONVERSATIONS.values():
        options = dict(add_generation_prompt=True, date_string="26 Jul 2024")
        expected = theirs.apply_chat_template(conversation, return_dict=False, **options)
        assert reloaded.apply_chat_template(conversation, return_dict=False, **options) == expected
        assert ours_again.apply_chat_template(conversation, return_dict=False, **options) == expected


def test_bad_chat_template_in_config_is_named(tmp_path):
    directory = families.write_qwen2(tmp_path / "bad")
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = {"not": "a list"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(BridgeError, match="chat_template"):
        load_tokenizer(directory)
    ours = load_tokenizer(chat_dirs_free_qwen2(tmp_path))
    with pytest.raises(ChatTemplateError, match="JSON schemas"):
        ours.apply_chat_template([USER], tools=[lambda city: city])
    with pytest.raises(BridgeError, match="chat_template"):
        ours.chat_template = 42


def chat_dirs_free_qwen2(tmp_path: Path) -> Path:
    return families.write_qwen2(tmp_path / "qwen2-plain")
