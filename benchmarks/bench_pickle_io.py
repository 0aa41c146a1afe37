"""pickle_io against torch, warm page cache, every tensor's pages touched after loading.

A BERT-base-sized state dict (about 110M float32 parameters, word embeddings tied to the MLM
decoder): load(mmap=True) vs torch.load(weights_only=True, mmap=True); load() of a legacy file vs
torch.load of it; load(mmap=False) vs torch.load(weights_only=True); save(format="zip") vs
torch.save; the peak extra memory of a mmap load, measured in a fresh subprocess. Many small
tensors (2,000 and 20,000 of 8 floats, where per-tensor costs dominate): save and load. A scaling
table (100 MiB and 1 GiB checkpoints; 4 GiB too with PICKLE_IO_BENCH_4GB=1, which needs about
12 GB of RAM and 16 GB of disk and takes minutes): save and load time against size.

Each ratio is the median of paired ratios from alternating runs (5 pairs; 15 for the BERT-base
loads, which are cheap). Where a row is near the physical floor, the floor is measured in the same
rounds: a plain os.write of the same bytes (saves), np.memmap of the same file with every page
touched (mapped loads), a plain read of the file into new memory (unmapped loads).
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
from harness import Pairs, Row, rounds

AREA = "pickle_io"
PAGE = os.sysconf("SC_PAGE_SIZE")
MEMORY_BUDGET_MB = 64
SCALING_TENSOR_BYTES = 4 * 2**20  # the scaling checkpoints are made of 4 MiB fp32 tensors


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


def torch_state_of(state) -> "collections.OrderedDict":
    """The same arrays as torch tensors (shared memory), ties kept as one tensor object."""
    tensors = {}
    return collections.OrderedDict(
        (name, tensors.setdefault(id(array), torch.from_numpy(array)))
        for name, array in state.items())


def unique_arrays(state) -> list:
    return list({id(array): array for array in state.values()}.values())


def plain_write(arrays, path: Path) -> None:
    """The save floor: the same bytes written to a new file with plain os.write calls."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for array in arrays:
            view = memoryview(np.ravel(array).view(np.uint8))
            while len(view):
                view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def plain_read(path: Path) -> int:
    """The unmapped-load floor: the whole file read into new memory, every page touched."""
    buffer = np.empty(path.stat().st_size, np.uint8)
    with open(path, "rb") as file:
        file.readinto(memoryview(buffer))
    return int(buffer[::PAGE].sum())


def memmap_touched(path: Path) -> int:
    """The mapped-load floor: np.memmap of the file, one byte of every page read."""
    return int(np.memmap(path, np.uint8, mode="r")[::PAGE].sum())


def fresh_outputs(*outputs: Path):
    """Run before each timed save: the old files are deleted and dirty pages flushed, untimed,
    so neither the kernel's freeing of old pages nor writeback of another's output is charged."""

    def before() -> None:
        for output in outputs:
            output.unlink(missing_ok=True)
        os.sync()

    return before


def pair_row(what: str, times: dict, peer_name: str, peer: str, target, note: str = "",
             ours_name: str = "ours") -> Row:
    pairs = Pairs(times[ours_name], times[peer_name])
    note = f"{note}; " if note else ""
    return Row(AREA, what, pairs.ours_s, peer, pairs.peer_s, target,
               note=f"{note}ratios {pairs.spread}", median_ratio=pairs.ratio)


def floor_note(times: dict, floor: str) -> str:
    """ours and the peer as multiples of the floor measured in the same rounds."""
    ours, peer = Pairs(times["ours"], times["floor"]), Pairs(times["peer"], times["floor"])
    return f"{floor}: {ours.peer_s:.4f} s, ours {ours.ratio:.2f}x of it, torch {peer.ratio:.2f}x"


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


def bert_rows(quick: bool, directory: Path) -> list:
    sizes = dict(vocab=1000, hidden=128, layers=2, positions=64) if quick else dict(
        vocab=30522, hidden=768, layers=12, positions=512)
    repeat = 3 if quick else 5
    load_repeat = 3 if quick else 15  # loads are cheap: more pairs, a steadier median
    state = bert_like_state_dict(**sizes)
    torch_state = torch_state_of(state)
    parameters = sum(array.size for array in unique_arrays(state))
    label = f"BERT-base-sized ({parameters / 1e6:.0f}M fp32, tied)"
    rows = []
    zip_path, legacy_path = directory / "zip.bin", directory / "legacy.bin"
    torch.save(torch_state, zip_path)
    torch.save(torch_state, legacy_path, _use_new_zipfile_serialization=False)

    times = rounds({"ours": lambda: touch_numpy(pickle_io.load(zip_path, mmap=True)),
                    "peer": lambda: touch_torch(torch.load(zip_path, weights_only=True, mmap=True)),
                    "floor": lambda: memmap_touched(zip_path)}, repeat=load_repeat)
    rows.append(pair_row(f"load(mmap=True) zip, {label}, pages touched", times, "peer",
                         "torch.load(weights_only=True, mmap=True)", 0.7,
                         floor_note(times, "np.memmap of the file, touched")))

    times = rounds({"ours": lambda: touch_numpy(pickle_io.load(legacy_path)),
                    "peer": lambda: touch_torch(torch.load(legacy_path, weights_only=True)),
                    "floor": lambda: memmap_touched(legacy_path)}, repeat=load_repeat)
    rows.append(pair_row(f"load() legacy, {label}, pages touched", times, "peer",
                         "torch.load(weights_only=True) (cannot mmap legacy)", 0.1,
                         floor_note(times, "np.memmap of the file, touched")))

    times = rounds({"ours": lambda: touch_numpy(pickle_io.load(zip_path, mmap=False)),
                    "peer": lambda: touch_torch(torch.load(zip_path, weights_only=True)),
                    "floor": lambda: plain_read(zip_path)}, repeat=load_repeat)
    rows.append(pair_row(f"load(mmap=False) zip, {label}, pages touched", times, "peer",
                         "torch.load(weights_only=True)", 0.7,
                         floor_note(times, "a plain read of the file")))

    ours_out, peer_out, floor_out = (directory / name for name in ("o.bin", "t.bin", "f.bin"))
    arrays = unique_arrays(state)
    times = rounds({"ours": lambda: pickle_io.save(state, ours_out),
                    "peer": lambda: torch.save(torch_state, peer_out),
                    "floor": lambda: plain_write(arrays, floor_out)},
                   repeat=2 * repeat, before=fresh_outputs(ours_out, peer_out, floor_out))
    overwrite = rounds({"ours": lambda: pickle_io.save(state, ours_out),
                        "peer": lambda: torch.save(torch_state, peer_out)}, repeat=repeat)
    overwrite_ratio = Pairs(overwrite["ours"], overwrite["peer"]).ratio
    rows.append(pair_row(
        f"save(format='zip') to a new file, {label}", times, "peer", "torch.save", 0.5,
        f"{floor_note(times, 'plain os.write of the same bytes')}; overwriting the previous file "
        f"(both sides then also free its pages): {overwrite_ratio:.2f}x"))
    rows.append(pair_row(f"save(format='zip') to a new file, {label}, against the floor", times,
                         "floor", "plain os.write of the same bytes (the floor)", None))

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


def many_tensor_state(count: int) -> "collections.OrderedDict":
    """`count` float32 tensors of 8 elements: an optimizer state's or adapter's shape of file."""
    rng = np.random.default_rng(0)
    return collections.OrderedDict(
        (f"layers.{index}.weight", rng.standard_normal(8, dtype=np.float32))
        for index in range(count))


def many_tensor_rows(quick: bool, directory: Path) -> list:
    rows = []
    for count in (200, 2000) if quick else (2000, 20000):
        state = many_tensor_state(count)
        torch_state = torch_state_of(state)
        label = f"{count:,} tensors of 8 fp32"
        ours_out, peer_out = directory / f"many-{count}-o.bin", directory / f"many-{count}-t.bin"
        times = rounds({"ours": lambda: pickle_io.save(state, ours_out),
                        "peer": lambda: torch.save(torch_state, peer_out)},
                       repeat=7, before=fresh_outputs(ours_out, peer_out))
        rows.append(pair_row(f"save(format='zip'), {label}", times, "peer", "torch.save", 0.8))
        torch.save(torch_state, peer_out)
        times = rounds({"ours": lambda: pickle_io.load(peer_out, mmap=True),
                        "peer": lambda: torch.load(peer_out, weights_only=True, mmap=True)},
                       repeat=7)
        rows.append(pair_row(f"load(mmap=True), {label}", times, "peer",
                             "torch.load(weights_only=True, mmap=True)", 1.0))
    return rows


def scaling_state(total_bytes: int) -> "collections.OrderedDict":
    """A state dict of `total_bytes` in 4 MiB float32 tensors, each filled (no zero pages)."""
    state = collections.OrderedDict()
    for index in range(max(1, total_bytes // SCALING_TENSOR_BYTES)):
        array = np.empty(SCALING_TENSOR_BYTES // 4, np.float32)
        array.fill(index + 0.5)
        state[f"layers.{index}.weight"] = array
    return state


def scaling_rows(quick: bool, directory: Path) -> list:
    sizes = [2**20 * 8, 2**20 * 64] if quick else [2**20 * 100, 2**30]
    if os.environ.get("PICKLE_IO_BENCH_4GB") == "1":
        sizes.append(4 * 2**30)
    rows = []
    for total in sizes:
        state = scaling_state(total)
        torch_state = torch_state_of(state)
        arrays = unique_arrays(state)
        label = (f"{total / 2**30:g} GiB" if total >= 2**30 else f"{total // 2**20} MiB") + (
            f" ({len(state)} x 4 MiB fp32)")
        repeat = 3
        ours_out, peer_out, floor_out = (directory / f"scale-{name}.bin" for name in "otf")
        times = rounds({"ours": lambda: pickle_io.save(state, ours_out),
                        "peer": lambda: torch.save(torch_state, peer_out),
                        "floor": lambda: plain_write(arrays, floor_out)},
                       repeat=repeat, before=fresh_outputs(ours_out, peer_out, floor_out))
        rows.append(pair_row(f"scaling: save(format='zip'), {label}", times, "peer",
                             "torch.save", None,
                             floor_note(times, "plain os.write of the same bytes")))
        fresh_outputs(ours_out, peer_out, floor_out)()
        torch.save(torch_state, peer_out)
        times = rounds({"ours": lambda: touch_numpy(pickle_io.load(peer_out, mmap=True)),
                        "peer": lambda: touch_torch(
                            torch.load(peer_out, weights_only=True, mmap=True)),
                        "floor": lambda: memmap_touched(peer_out)}, repeat=repeat)
        rows.append(pair_row(f"scaling: load(mmap=True), {label}, pages touched", times, "peer",
                             "torch.load(weights_only=True, mmap=True)", None,
                             floor_note(times, "np.memmap of the file, touched")))
        times = rounds({"ours": lambda: touch_numpy(pickle_io.load(peer_out, mmap=False)),
                        "peer": lambda: touch_torch(torch.load(peer_out, weights_only=True)),
                        "floor": lambda: plain_read(peer_out)}, repeat=repeat)
        rows.append(pair_row(f"scaling: load(mmap=False), {label}, pages touched", times, "peer",
                             "torch.load(weights_only=True)", None,
                             floor_note(times, "a plain read of the file")))
        peer_out.unlink()
        del state, torch_state, arrays
    return rows


def run(quick: bool) -> list:
    with tempfile.TemporaryDirectory(prefix="bench-pickle-io-") as directory:
        return (bert_rows(quick, Path(directory)) + many_tensor_rows(quick, Path(directory))
                + scaling_rows(quick, Path(directory)))
