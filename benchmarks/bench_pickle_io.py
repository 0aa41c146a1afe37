"""pickle_io against torch on a BERT-base-sized state dict (about 110M float32 parameters, word
embeddings tied to the MLM decoder), warm page cache, every tensor's pages touched after loading.

Rows: load(mmap=True) vs torch.load(weights_only=True, mmap=True); load() of a legacy file vs
torch.load of it; load(mmap=False) vs torch.load(weights_only=True); save(format="zip") vs
torch.save; and the peak extra memory of a mmap load, measured in a fresh subprocess.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import pickle_io
from harness import Row, best_of, interleaved

AREA = "pickle_io"
PAGE = os.sysconf("SC_PAGE_SIZE")
MEMORY_BUDGET_MB = 64


def bert_like_state_dict(vocab: int, hidden: int, layers: int, positions: int) -> "collections.OrderedDict":
    """BERT-for-masked-LM parameter shapes with float32 values; the decoder weight is the word
    embedding itself (tied)."""
    rng = np.random.default_rng(0)
    state = collections.OrderedDict()

    def add(name: str, *shape: int) -> None:
        state[name] = rng.standard_normal(shape, dtype=np.float32)

    add("bert.embeddings.word_embeddings.weight", vocab, hidden)
    add("bert.embeddings.position_embeddings.weight", positions, hidden)
    add("bert.embeddings.token_type_embeddings.weight", 2, hidden)
    add("bert.embeddings.LayerNorm.weight", hidden)
    add("bert.embeddings.LayerNorm.bias", hidden)
    for layer in range(layers):
        prefix = f"bert.encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            add(prefix + name + ".weight", hidden, hidden)
            add(prefix + name + ".bias", hidden)
        add(prefix + "attention.output.LayerNorm.weight", hidden)
        add(prefix + "attention.output.LayerNorm.bias", hidden)
        add(prefix + "intermediate.dense.weight", 4 * hidden, hidden)
        add(prefix + "intermediate.dense.bias", 4 * hidden)
        add(prefix + "output.dense.weight", hidden, 4 * hidden)
        add(prefix + "output.dense.bias", hidden)
        add(prefix + "output.LayerNorm.weight", hidden)
        add(prefix + "output.LayerNorm.bias", hidden)
    add("cls.predictions.transform.dense.weight", hidden, hidden)
    add("cls.predictions.transform.dense.bias", hidden)
    add("cls.predictions.transform.LayerNorm.weight", hidden)
    add("cls.predictions.transform.LayerNorm.bias", hidden)
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    add("cls.predictions.bias", vocab)
    return state


def touch_numpy(state) -> int:
    """Read one byte of every page of every tensor (the arrays here are all contiguous)."""
    return sum(int(np.ravel(array).view(np.uint8)[::PAGE].sum()) for array in state.values())


def touch_torch(state) -> int:
    return sum(int(t.reshape(-1).view(torch.uint8)[::PAGE].sum()) for t in state.values())


def interleaved_fresh_saves(ours, peer, outputs, repeat: int) -> tuple:
    """Best times of two savers, alternating, each writing a file that does not exist yet: the
    old file is deleted and dirty pages are flushed untimed, so neither the kernel's freeing of
    old pages nor writeback of the other's output is charged to either side."""

    def timed(save) -> float:
        for output in outputs:
            output.unlink(missing_ok=True)
        os.sync()
        return best_of(save, repeat=1, warmup=0)

    best_ours = best_peer = float("inf")
    for _ in range(repeat + 1):
        best_ours = min(best_ours, timed(ours))
        best_peer = min(best_peer, timed(peer))
    return best_ours, best_peer


_MEMORY_PROBE = r"""
import json, sys
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
path, who = sys.argv[1], sys.argv[2]
if who == "ours":
    import numpy as np, pickle_io
    load = lambda: pickle_io.load(path, mmap=True)
    touch = lambda s: [np.ravel(a).view(np.uint8)[::4096].sum() for a in s.values()]
else:
    import torch
    load = lambda: torch.load(path, weights_only=True, mmap=True)
    touch = lambda s: [t.reshape(-1).view(torch.uint8)[::4096].sum() for t in s.values()]
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark
rss, anon = status("VmRSS"), status("RssAnon")
state = load()
peak = status("VmHWM") - rss
touch(state)
print(json.dumps({"peak_load_mb": peak, "anon_after_touch_mb": status("RssAnon") - anon}))
"""


def memory_of_mmap_load(path: Path, who: str) -> dict:
    result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), who], check=True,
                            capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list:
    sizes = dict(vocab=1000, hidden=128, layers=2, positions=64) if quick else dict(
        vocab=30522, hidden=768, layers=12, positions=512)
    repeat = 3
    state = bert_like_state_dict(**sizes)
    torch_state = collections.OrderedDict((name, torch.from_numpy(array)) for name, array in state.items())
    # Tie them in torch too (one tensor object), so torch.save also stores the embedding once.
    torch_state["cls.predictions.decoder.weight"] = torch_state["bert.embeddings.word_embeddings.weight"]
    parameters = sum(a.size for n, a in state.items() if n != "cls.predictions.decoder.weight")
    label = f"BERT-base-sized ({parameters / 1e6:.0f}M fp32, tied)"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pickle-io-") as directory:
        zip_path = Path(directory) / "zip.bin"
        legacy_path = Path(directory) / "legacy.bin"
        torch.save(torch_state, zip_path)
        torch.save(torch_state, legacy_path, _use_new_zipfile_serialization=False)

        ours, peer = interleaved(lambda: touch_numpy(pickle_io.load(zip_path, mmap=True)),
                                 lambda: touch_torch(torch.load(zip_path, weights_only=True, mmap=True)),
                                 repeat=repeat)
        rows.append(Row(AREA, f"load(mmap=True) zip, {label}, pages touched", ours,
                        "torch.load(weights_only=True, mmap=True)", peer, 1.0))

        ours, peer = interleaved(lambda: touch_numpy(pickle_io.load(legacy_path)),
                                 lambda: touch_torch(torch.load(legacy_path, weights_only=True)),
                                 repeat=repeat)
        rows.append(Row(AREA, f"load() legacy, {label}, pages touched", ours,
                        "torch.load(weights_only=True) (cannot mmap legacy)", peer, 0.1))

        ours, peer = interleaved(lambda: touch_numpy(pickle_io.load(zip_path, mmap=False)),
                                 lambda: touch_torch(torch.load(zip_path, weights_only=True)),
                                 repeat=repeat)
        rows.append(Row(AREA, f"load(mmap=False) zip, {label}, pages touched", ours,
                        "torch.load(weights_only=True)", peer, 1.0))

        ours_out, peer_out = Path(directory) / "ours.bin", Path(directory) / "torch.bin"
        ours, peer = interleaved_fresh_saves(lambda: pickle_io.save(state, ours_out),
                                             lambda: torch.save(torch_state, peer_out),
                                             [ours_out, peer_out], 2 * repeat)
        overwrite_ours, overwrite_peer = interleaved(lambda: pickle_io.save(state, ours_out),
                                                     lambda: torch.save(torch_state, peer_out),
                                                     repeat=repeat)
        rows.append(Row(AREA, f"save(format='zip') to a new file, {label}", ours, "torch.save",
                        peer, 0.6, note=(f"overwriting the previous file (both sides then also "
                                         f"free its pages): {overwrite_ours / overwrite_peer:.2f}x")))

        ours_memory = memory_of_mmap_load(zip_path, "ours")
        peer_memory = memory_of_mmap_load(zip_path, "torch")
        rows.append(Row(
            AREA, f"peak extra memory of load(mmap=True), {label} [MB, not s]",
            ours_memory["peak_load_mb"], f"the {MEMORY_BUDGET_MB} MB budget", MEMORY_BUDGET_MB,
            1.0, note=(f"anonymous memory after touching every page: ours "
                       f"{ours_memory['anon_after_touch_mb']:.1f} MB, torch mmap "
                       f"{peer_memory['anon_after_touch_mb']:.1f} MB; torch mmap peak "
                       f"{peer_memory['peak_load_mb']:.1f} MB")))
    return rows
