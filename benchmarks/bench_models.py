"""bridge.models against transformers: forward passes, generation and from_pretrained, same weights.

Forward: BERT-base (BertModel) and GPT-2 small (GPT2LMHeadModel) with random weights of the real
sizes, batch 8 x 128 tokens, fp32, CPU, under torch.inference_mode. Loading: from_pretrained of a
BERT-base-sized checkpoint directory (model.safetensors + config.json) written by transformers.
Targets: at most 1.0x transformers' time.

Llama (LlamaForCausalLM, ~0.49B parameters: hidden 1024, 28 layers, 16 query / 4 key-value heads,
intermediate 4096, vocabulary 32000, untied), in fp32 and bf16: forward of batch 4 x 256 (at most
1.0x), greedy generation of 64 tokens after a 32-token prompt (at most 1.0x the time, i.e. at least
as many tokens/s), from_pretrained of its model.safetensors (at most 0.6x), and the peak RSS of a
fresh process that loads it and reads every weight once (at most 1.2x the file size; a row of GB).

Run these rows alone on a busy machine: `python benchmarks/bench_models.py --only llama [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
import warnings
from typing import Iterable, List, Optional

import torch
import transformers

import bridge.config
from bridge import models
from harness import Row, interleaved

AREA = "models"
TARGET = 1.0
LOAD_TARGET, RSS_TARGET = 0.6, 1.2
GROUPS = ("bert", "gpt2", "llama")
PEER = f"transformers {transformers.__version__}"
# ~0.49B parameters; `eos_token_id=None` so that both sides generate all 64 tokens.
LLAMA_SIZES = dict(
    vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=False, eos_token_id=None,
)


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
    return Row(AREA, what, ours_s, PEER, peer_s, TARGET)


def run(quick: bool, only: Optional[Iterable[str]] = None) -> List[Row]:
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    only = set(only or GROUPS)
    rows = []
    if only & {"bert", "gpt2"}:
        rows += _bert_gpt2_rows(quick, only)
    if "llama" in only:
        for dtype in (torch.float32, torch.bfloat16):
            rows += _llama_rows(quick, dtype)
    return rows


def _bert_gpt2_rows(quick: bool, only: set) -> List[Row]:
    repeat = 2 if quick else 10
    batch, tokens = (2, 32) if quick else (8, 128)
    ids = torch.randint(0, 30000, (batch, tokens), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    shape = f"batch {batch} x {tokens}, fp32" + (", 2 layers" if quick else "")
    rows = []
    if "gpt2" in only and "bert" not in only:
        theirs, ours = _pair("gpt2", "GPT2LMHeadModel", quick)
        return [_forward_row(f"GPT2LMHeadModel forward, GPT-2 small, {shape}", theirs, ours, inputs, repeat)]

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
            rows.append(Row(AREA, what, ours_s, PEER, peer_s, TARGET))
            for path in Path(directory).iterdir():
                path.unlink()
        del theirs, ours

    if "gpt2" in only:
        theirs, ours = _pair("gpt2", "GPT2LMHeadModel", quick)
        rows.append(_forward_row(f"GPT2LMHeadModel forward, GPT-2 small, {shape}", theirs, ours, inputs, repeat))
    return rows


def _llama_rows(quick: bool, dtype: torch.dtype) -> List[Row]:
    repeat = 2 if quick else 5  # seconds per call at this size on a few cores; more repeats against noise
    sizes = dict(LLAMA_SIZES, num_hidden_layers=2) if quick else dict(LLAMA_SIZES)
    name = "bf16" if dtype == torch.bfloat16 else "fp32"
    label = f"Llama ~0.5B, {name}" + (", 2 layers" if quick else "")
    torch.manual_seed(0)
    # from_config(dtype=...) as from_pretrained builds it: the RoPE frequencies stay float32 (`.to(bf16)` would round them)
    theirs = transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig(**sizes), dtype=dtype).eval()
    ours = models.LlamaForCausalLM.from_state_dict(bridge.config.LlamaConfig(**sizes), theirs.state_dict())
    rows = []

    ids = torch.randint(3, 32000, (4, 256), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    rows.append(_forward_row(f"LlamaForCausalLM forward, {label}, batch 4 x 256", theirs, ours, inputs, repeat))

    prompt = ids[:1, :32]

    def generate_ours():
        ours.generate(prompt, max_new_tokens=64)

    def generate_theirs():
        theirs.generate(prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)

    assert ours.generate(prompt, max_new_tokens=64).tolist() == theirs.generate(
        prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0
    ).tolist(), "greedy generation differs from transformers'"
    ours_s, peer_s = interleaved(generate_ours, generate_theirs, repeat=repeat)
    tokens_per_s = f"{64 / ours_s:.1f} vs {64 / peer_s:.1f} tokens/s"
    what = f"LlamaForCausalLM.generate, greedy 64 tokens, {label}"
    rows.append(Row(AREA, what, ours_s, PEER, peer_s, TARGET, note=tokens_per_s))

    with tempfile.TemporaryDirectory() as directory:
        theirs.save_pretrained(directory, safe_serialization=True)
        del theirs, ours

        def load_ours():
            models.LlamaForCausalLM.from_pretrained(directory)

        def load_theirs():
            transformers.LlamaForCausalLM.from_pretrained(directory, dtype="auto")

        ours_s, peer_s = interleaved(load_ours, load_theirs, repeat=repeat)
        rows.append(Row(AREA, f"LlamaForCausalLM.from_pretrained, {label} safetensors", ours_s, PEER, peer_s, LOAD_TARGET))
        file_gb = (Path(directory) / "model.safetensors").stat().st_size / 1e9
        ours_gb, theirs_gb = _peak_rss_gb(directory, "ours"), _peak_rss_gb(directory, "theirs")
        note = f"GB, not s; transformers peaks at {theirs_gb:.2f} GB ({theirs_gb / file_gb:.2f}x)"
        what = f"peak RSS of from_pretrained + reading every weight, {label}"
        rows.append(Row(AREA, what, ours_gb, "the safetensors file size", file_gb, RSS_TARGET, note=note))
    return rows


_RSS_SCRIPT = """
import json, sys, torch, transformers
import bridge.models
def status_gb(field):
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024 / 1e9
def load(directory):
    if sys.argv[2] == "ours":
        return bridge.models.LlamaForCausalLM.from_pretrained(directory)
    return transformers.LlamaForCausalLM.from_pretrained(directory, dtype="auto")
load(sys.argv[3])  # a tiny model first, so that lazy imports do not count
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = status_gb("VmRSS")
model = load(sys.argv[1])
with torch.no_grad():
    for parameter in model.parameters():
        parameter.sum()  # every weight read once, in its own dtype
print(json.dumps({"peak_gb": status_gb("VmHWM") - before}))
"""


def _peak_rss_gb(directory: str, side: str) -> float:
    """Peak resident memory (GB) a fresh process adds to load and read the model, after a warm-up
    load of a tiny one (imports and first-call set-up are not the checkpoint's)."""
    with tempfile.TemporaryDirectory() as tiny:
        config = transformers.LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2)
        transformers.LlamaForCausalLM(config).save_pretrained(tiny)
        result = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, directory, side, tiny], capture_output=True, text=True, check=True
        )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_gb"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="bridge.models against transformers, selected rows only")
    parser.add_argument("--quick", action="store_true", help="2 layers, fewer repeats")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=GROUPS)
    arguments = parser.parse_args()
    for row in run(arguments.quick, arguments.only):
        met = "-" if row.target is None else ("yes" if row.ratio <= row.target else "NO")
        note = f" ({row.note})" if row.note else ""
        print(f"| {row.what}{note} | {row.ours_s:.4f} | {row.peer} | {row.peer_s:.4f} | {row.ratio:.2f}x | <= {row.target}x | {met} |")
