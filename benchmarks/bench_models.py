"""bridge.models against transformers: forward passes and from_pretrained, same weights both sides.

Forward: BERT-base (BertModel) and GPT-2 small (GPT2LMHeadModel) with random weights of the real
sizes, batch 8 x 128 tokens, fp32, CPU, under torch.inference_mode. Loading: from_pretrained of a
BERT-base-sized checkpoint directory (model.safetensors + config.json) written by transformers.
Targets: at most 1.0x transformers' time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
import warnings
from typing import List

import torch
import transformers

import bridge.config
from bridge import models
from harness import Row, interleaved

AREA = "models"
TARGET = 1.0


def _pair(family: str, class_name: str, quick: bool, **sizes):
    """transformers' model and ours with the same random weights."""
    if quick:
        sizes.update(num_hidden_layers=2)
    their_config = transformers.AutoConfig.for_model(family, **sizes)
    our_config = bridge.config.CONFIG_CLASSES[family](**sizes)
    torch.manual_seed(0)
    theirs = getattr(transformers, class_name)(their_config).eval()
    ours = getattr(models, class_name).from_state_dict(our_config, theirs.state_dict())
    return theirs, ours


def _forward_row(what: str, theirs, ours, inputs, repeat: int) -> Row:
    def forward(model):
        def call():
            with torch.inference_mode():
                model(**inputs)

        return call

    ours_s, peer_s = interleaved(forward(ours), forward(theirs), repeat=repeat)
    return Row(AREA, what, ours_s, "transformers 5.23", peer_s, TARGET)


def run(quick: bool) -> List[Row]:
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    repeat = 2 if quick else 10
    batch, tokens = (2, 32) if quick else (8, 128)
    ids = torch.randint(0, 30000, (batch, tokens), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    shape = f"batch {batch} x {tokens}, fp32" + (", 2 layers" if quick else "")
    rows = []

    theirs, ours = _pair("bert", "BertModel", quick)
    rows.append(_forward_row(f"BertModel forward, BERT-base, {shape}", theirs, ours, inputs, repeat))

    with tempfile.TemporaryDirectory() as directory:
        for safe_serialization, form in ((True, "safetensors"), (False, "pytorch_model.bin")):
            theirs.save_pretrained(directory, safe_serialization=safe_serialization)

            def load_ours():
                models.BertModel.from_pretrained(directory)

            def load_theirs():
                transformers.BertModel.from_pretrained(directory)

            ours_s, peer_s = interleaved(load_ours, load_theirs, repeat=repeat)
            what = f"BertModel.from_pretrained, BERT-base {form} dir"
            rows.append(Row(AREA, what, ours_s, "transformers 5.23", peer_s, TARGET))
            for path in Path(directory).iterdir():
                path.unlink()
        del theirs, ours

    theirs, ours = _pair("gpt2", "GPT2LMHeadModel", quick)
    rows.append(_forward_row(f"GPT2LMHeadModel forward, GPT-2 small, {shape}", theirs, ours, inputs, repeat))
    return rows
