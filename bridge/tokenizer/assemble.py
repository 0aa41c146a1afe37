"""Build the `tokenizers.Tokenizer` that does the work, the way transformers builds it.

Three sources, in order of preference:
  * tokenizer.json: the library's own serialization, loaded as is; for the classes transformers 5
    rebuilds around the file's vocabulary and merges (LlamaTokenizer, Qwen2Tokenizer,
    GPT2Tokenizer), rebuilt the same way (`rebuilt_from_tokenizer_json`);
  * vocab.txt (BERT): WordPiece with a BertNormalizer, BertPreTokenizer and WordPiece decoder,
    as transformers' BertTokenizer assembles it;
  * vocab.json + merges.txt (GPT-2, RoBERTa): byte-level BPE, as GPT2Tokenizer / RobertaTokenizer do.
Then, for every source, the named special tokens join the added vocabulary (so a literal "[MASK]"
in text is one token) and the post-processor (the [CLS] ... [SEP] template) is settled.
Nothing here tokenizes by hand: every step is one of the library's building blocks.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece

from bridge.tokenizer.settings import SPECIAL_TOKEN_NAMES, TokenizerError, TokenizerSettings


# Qwen2Tokenizer's pre-tokenizer split (transformers' PRETOKENIZE_REGEX), as GPT-4's but one digit at a time.
QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The families whose transformers class rebuilds the pipeline around tokenizer.json's vocabulary.
REBUILT_FAMILIES = ("llama", "qwen2", "gpt2")


def from_tokenizer_json(path: Path, text: str) -> Tokenizer:
    """Load a tokenizer.json (read from `path` as `text`) as the library wrote it."""
    try:
        return Tokenizer.from_str(text)
    except Exception as error:  # the library raises a bare Exception on malformed files
        raise TokenizerError(f"cannot load {path}: {error}") from error


def rebuilt_from_tokenizer_json(path: Path, text: str, settings: TokenizerSettings) -> Tokenizer:
    """The tokenizer transformers 5's LlamaTokenizer / Qwen2Tokenizer / GPT2Tokenizer build from a tokenizer.json.

    Those classes keep only the file's vocabulary, merges and post-processor (and its added tokens
    when the config lists none) and set their own BPE options, normalizer, pre-tokenizer and decoder
    from the config: Llama's Metaspace with `add_prefix_space` and `legacy`, Qwen2's NFC and digit
    split, GPT-2's ByteLevel. Real checkpoints' files agree with that rebuild; hand-made ones may not.
    """
    try:
        content = json.loads(text)
        model = content["model"]
        vocab, merges = model["vocab"], model.get("merges", [])
    except (ValueError, KeyError, TypeError) as error:
        raise TokenizerError(f"cannot load {path}: not a tokenizer.json with a model vocabulary ({error})") from error
    if isinstance(vocab, list):  # a Unigram vocabulary: [piece, score] pairs, the index is the id
        vocab = {item[0] if isinstance(item, list) else item: index for index, item in enumerate(vocab)}
    family, options = settings.family.name, settings.options
    bpe = {"type": "BPE", "dropout": None, "unk_token": None, "ignore_merges": False, "vocab": vocab, "merges": merges}
    if family == "llama":
        bpe.update(continuing_subword_prefix=None, end_of_word_suffix=None, fuse_unk=True, byte_fallback=True)
    else:
        bpe.update(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    skeleton = {key: content.get(key) for key in ("version", "post_processor")}
    skeleton.update(model=bpe, added_tokens=[], normalizer=None, pre_tokenizer=None, decoder=None)
    try:
        tokenizer = Tokenizer.from_str(json.dumps(skeleton))
    except Exception as error:  # the library raises a bare Exception on malformed files
        raise TokenizerError(f"cannot load {path}: {error}") from error

    if family == "llama":
        add_prefix_space = options.get("add_prefix_space")
        add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
        prepend_scheme = ("always" if options.get("legacy") else "first") if add_prefix_space else "never"
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=False)
        steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        if add_prefix_space:
            steps.append(decoders.Strip(content=" ", left=1))
        tokenizer.decoder = decoders.Sequence(steps)
    elif family == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=bool(options.get("add_prefix_space", False)), use_regex=False),
            ]
        )
        tokenizer.decoder = decoders.ByteLevel()
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(options.get("add_prefix_space", False)))
        tokenizer.decoder = decoders.ByteLevel()

    if not settings.added_tokens:  # as transformers: the file's added tokens, when the config has none
        flags = ("single_word", "lstrip", "rstrip", "normalized", "special")
        for token in content.get("added_tokens") or []:
            try:
                fields = {key: bool(token[key]) for key in flags if key in token}
                settings.added_tokens[int(token["id"])] = AddedToken(str(token["content"]), **fields)
            except (KeyError, TypeError, ValueError) as error:
                raise TokenizerError(f"{path}: malformed entry in added_tokens: {token!r}") from error
    return tokenizer


def wordpiece_from_vocab_txt(path: Path, settings: TokenizerSettings) -> Tokenizer:
    """BERT's WordPiece tokenizer from vocab.txt (one token a line; the line number is the id)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise TokenizerError(f"cannot read {path}: {error}") from error
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line; it is not an empty token
    # Like transformers' load_vocab: a token repeated later in the file takes the later id.
    vocab = {token: index for index, token in enumerate(lines)}
    unk_token = str(settings.special_tokens.get("unk_token", "[UNK]"))
    options = settings.options
    tokenizer = Tokenizer(WordPiece(vocab, unk_token=unk_token))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=options.get("tokenize_chinese_chars", True),
        strip_accents=options.get("strip_accents"),
        lowercase=options.get("do_lower_case", True),
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def byte_level_bpe_from_files(vocab_json: Path, merges_txt: Path, settings: TokenizerSettings) -> Tokenizer:
    """GPT-2 / RoBERTa byte-level BPE from vocab.json and merges.txt."""
    try:
        vocab, merges = BPE.read_file(str(vocab_json), str(merges_txt))
    except Exception as error:  # the library raises a bare Exception on malformed files
        raise TokenizerError(f"cannot read {vocab_json} and {merges_txt}: {error}") from error
    model = BPE(
        vocab=vocab,
        merges=merges,
        dropout=None,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
    )
    tokenizer = Tokenizer(model)
    add_prefix_space = settings.options.get("add_prefix_space", False)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    if settings.family.name == "roberta":
        _add_special_tokens(tokenizer, settings)  # RobertaProcessing needs the <s> and </s> ids
        tokenizer.post_processor = processors.RobertaProcessing(  # positional: (sep, cls, trim, prefix)
            _token_and_id(tokenizer, settings, "sep_token"),
            _token_and_id(tokenizer, settings, "cls_token"),
            settings.options.get("trim_offsets", True),
            add_prefix_space,
        )
    return tokenizer


def finish(tokenizer: Tokenizer, settings: TokenizerSettings, *, assembled: bool) -> Tokenizer:
    """Add the special tokens and settle the post-processor; clear padding/truncation.

    An assembled BERT tokenizer gets the [CLS] $A [SEP] ($B [SEP]) template. An assembled tokenizer
    whose config sets add_bos_token/add_eos_token, or any tokenizer with no post-processor at all
    (GPT-2), gets transformers' generic bos/eos template instead, as transformers'
    `update_post_processor` does. With a tokenizer.json, transformers 5 ignores the config's
    add_bos_token/add_eos_token: the file's post-processor decides (Llama 2's adds <s>).
    """
    _add_special_tokens(tokenizer, settings)
    if settings.family.name == "qwen2":  # Qwen2Tokenizer re-adds its special tokens, marked special
        tokenizer.add_tokens([AddedToken(content, special=True) for content in _special_contents(settings)])
    if assembled and settings.family.name == "bert":
        cls = _token_and_id(tokenizer, settings, "cls_token")
        sep = _token_and_id(tokenizer, settings, "sep_token")
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls[0]}:0 $A:0 {sep[0]}:0",
            pair=f"{cls[0]}:0 $A:0 {sep[0]}:0 $B:1 {sep[0]}:1",
            special_tokens=[cls, sep],
        )
    explicit_bos_eos = "add_bos_token" in settings.options or "add_eos_token" in settings.options
    if (assembled and explicit_bos_eos) or tokenizer.post_processor is None:
        tokenizer.post_processor = _bos_eos_template(tokenizer, settings, from_config=assembled)
    # A tokenizer.json may carry a fixed padding/truncation; transformers resets both on every call.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _add_special_tokens(tokenizer: Tokenizer, settings: TokenizerSettings) -> None:
    """Add the config's added tokens (by id), then the named and extra special tokens not yet added.

    Mirrors transformers' TokenizersBackend.__init__: a token already in the added vocabulary keeps
    its entry; a token missing from the vocabulary gets the next free id.
    """
    present = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    to_add: list[AddedToken] = []
    for _, token in sorted(settings.added_tokens.items()):
        if token.content not in present:
            to_add.append(token)
            present.add(token.content)
    named = [settings.special_tokens[name] for name in SPECIAL_TOKEN_NAMES if name in settings.special_tokens]
    for token in named + list(settings.extra_special_tokens):
        if token.content not in present:
            token.special = True
            to_add.append(token)
            present.add(token.content)
    if to_add:
        tokenizer.add_tokens(to_add)


def _special_contents(settings: TokenizerSettings) -> list[str]:
    """transformers' all_special_tokens: the named ones, then the extra ones, each once."""
    named = [settings.special_tokens[name].content for name in SPECIAL_TOKEN_NAMES if name in settings.special_tokens]
    return list(dict.fromkeys(named + [token.content for token in settings.extra_special_tokens]))


def _token_and_id(tokenizer: Tokenizer, settings: TokenizerSettings, name: str) -> tuple[str, int]:
    token = settings.special_tokens.get(name)
    token_id = None if token is None else tokenizer.token_to_id(token.content)
    if token_id is None:
        raise TokenizerError(f"the {settings.family.name} tokenizer needs a {name} in its vocabulary")
    return token.content, token_id


def _bos_eos_template(
    tokenizer: Tokenizer, settings: TokenizerSettings, *, from_config: bool
) -> processors.TemplateProcessing:
    """`$A` (and `$A $B` for pairs), each sequence wrapped in bos/eos where the config asks for them
    (`from_config`; else neither)."""
    before: list[str] = []
    after: list[str] = []
    special_tokens = []
    options = settings.options if from_config else {}
    if options.get("add_bos_token") and "bos_token" in settings.special_tokens:
        bos, bos_id = _token_and_id(tokenizer, settings, "bos_token")
        before, special_tokens = [bos], special_tokens + [(bos, bos_id)]
    if options.get("add_eos_token") and "eos_token" in settings.special_tokens:
        eos, eos_id = _token_and_id(tokenizer, settings, "eos_token")
        after, special_tokens = [eos], special_tokens + [(eos, eos_id)]

    def wrapped(sequence: str, type_id: int) -> list[str]:
        return [f"{piece}:{type_id}" for piece in before + [sequence] + after]

    return processors.TemplateProcessing(
        single=wrapped("$A", 0), pair=wrapped("$A", 0) + wrapped("$B", 1), special_tokens=special_tokens
    )
