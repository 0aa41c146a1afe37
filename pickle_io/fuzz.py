"""A mutation fuzzer for pickle_io's readers (and, for comparison, torch.load(weights_only=True)).

    python -m pickle_io.fuzz --cases 30000 [--seeds DIR] [--target pickle_io|MODULE:FUNCTION]

Each case is a seed file (a checkpoint or pickle from DIR, else built-in ones that pickle_io and
Python's pickle write) mutated deterministically from (--seed, case number): byte edits, inserted
opcodes and boundary numbers, truncation, splices, and edits of the pickle inside a zip
re-packed as a valid archive. A worker process reads each case (pickle_io: load with and without
mmap, inspect and scan; another target: FUNCTION(path), e.g. `torch:load`, which is
torch.load(weights_only=True) from torch 2.6 on) under a memory limit; the parent
kills and restarts it when a case runs past --timeout (a hang) or the worker dies (a crash). The
report counts outcomes by exception type, foreign exceptions (anything pickle_io raises that is
not a PickleIOError), crashes, hangs and the workers' peak memory. The same --seed and seeds give
the same cases for every target. pickle_io never imports another target's module: the worker
imports it by name, so pickle_io stays free of torch.
"""

from __future__ import annotations

import argparse
import collections
import io
import multiprocessing
import os
import pickle
import random
import resource
import struct
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Counter, Dict, List, Optional, Tuple

import numpy as np

_INTERESTING_OPCODES = [b"(", b"t", b"l", b"d", b"]", b"}", b")", b"\x85", b"\x86", b"\x87",
                        b"a", b"e", b"s", b"u", b"R", b"b", b"Q", b"h\x00", b"q\x00", b"\x94",
                        b"\x93", b"0", b"2", b"1", b"\x8f", b"\x90", b"\x91", b"\x81", b"\x92",
                        b"N", b"\x88", b"K\x07", b"J\xff\xff\xff\x7f", b"\x8a\x08", b"\x8b",
                        b"X\xff\xff\xff\xff", b"\x8d", b"\x8e", b"\x96", b"\x97", b"\x82\x01",
                        b"ccollections\nOrderedDict\n", b"cos\nsystem\n",
                        b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n",
                        b"cnumpy\ndtype\n", b"c_codecs\nencode\n", b"\x80\x05"]
_BOUNDARY_NUMBERS = [0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                     2**62, 2**63 - 1, 2**64 - 1]


@dataclass
class Report:
    target: str
    cases: int = 0
    outcomes: Counter = field(default_factory=collections.Counter)  # "ok" / exception type
    foreign: Counter = field(default_factory=collections.Counter)  # not a PickleIOError
    crashes: Counter = field(default_factory=collections.Counter)  # signal name -> cases
    hangs: int = 0
    peak_rss_mb: float = 0.0
    seconds: float = 0.0
    examples: Dict[str, int] = field(default_factory=dict)  # outcome -> first case number

    def text(self) -> str:
        lines = [f"target {self.target}: {self.cases} cases in {self.seconds:.0f} s",
                 "outcomes (calls):"]
        lines += [f"  {name:<28} {count:>8}" for name, count in self.outcomes.most_common()]
        lines.append(f"foreign exceptions: {sum(self.foreign.values())} {dict(self.foreign)}")
        lines.append(f"crashes: {sum(self.crashes.values())} {dict(self.crashes)}")
        lines.append(f"hangs: {self.hangs}")
        lines.append(f"peak worker memory: {self.peak_rss_mb:.0f} MB")
        if self.examples:
            lines.append("first case of each bad outcome: " + ", ".join(
                f"{name} #{case}" for name, case in sorted(self.examples.items())))
        return "\n".join(lines)


# ----- seeds and mutations -------------------------------------------------------------------


def builtin_seeds() -> List[bytes]:
    """Small files of every kind pickle_io reads, written by pickle_io and by Python's pickle."""
    import pickle_io

    seeds = []
    state = collections.OrderedDict(
        w=np.arange(12, dtype=np.float32).reshape(3, 4), b=np.arange(3), h=np.ones(2, np.float16))
    state["wT"] = state["w"].T
    state._metadata = {"": {"version": 1}}
    with tempfile.TemporaryDirectory() as directory:
        for form in ("zip", "legacy"):
            path = Path(directory) / f"{form}.bin"
            pickle_io.save({"state": state, "step": 7, "names": ("a", b"x", None)}, path,
                           format=form)
            seeds.append(path.read_bytes())
    plain = {"int": 42, "big": 2**70, "float": 1.5, "text": "Résumé", "bytes": b"1234\xb2",
             "tuple": (1, 2.0), "set": {1, 2}, "frozen": frozenset({3}), "list": [[1], {}],
             "array": np.arange(6.0).reshape(2, 3), "scalar": np.float32(2.5)}
    seeds += [pickle.dumps(plain, protocol=protocol) for protocol in range(6)]
    return seeds


def _mutate_bytes(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 6)):
        if not data:
            data.extend(rng.choice(_INTERESTING_OPCODES))
            continue
        position = rng.randrange(len(data))
        kind = rng.randrange(7)
        if kind == 0:
            data[position] = rng.randrange(256)
        elif kind == 1:
            data.insert(position, rng.randrange(256))
        elif kind == 2:
            del data[position:position + rng.randint(1, 8)]
        elif kind == 3:
            data[position:position] = rng.choice(_INTERESTING_OPCODES) * rng.choice((1, 1, 2, 50))
        elif kind == 4:
            number = rng.choice(_BOUNDARY_NUMBERS)
            size = rng.choice((1, 2, 4, 8))
            data[position:position + size] = (number % 256**size).to_bytes(size, "little")
        elif kind == 5:  # duplicate a chunk (repeated structure, shared references)
            chunk = data[position:position + rng.randint(1, 64)]
            data[position:position] = chunk * rng.randint(1, 20)
        else:
            data[position] ^= 1 << rng.randrange(8)


def _repacked_zip(seed: bytes, rng: random.Random) -> Optional[bytes]:
    """The seed zip with its data.pkl mutated, written as a valid archive (so the edit reaches
    the pickle machine instead of the zip reader)."""
    try:
        with zipfile.ZipFile(io.BytesIO(seed)) as archive:
            records = [(info.filename, archive.read(info)) for info in archive.infolist()]
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, payload in records:
            if name.endswith(".pkl"):
                payload = bytearray(payload)
                _mutate_bytes(payload, rng)
            archive.writestr(name, bytes(payload))
    return out.getvalue()


def make_case(seeds: List[bytes], seed: int, number: int) -> bytes:
    rng = random.Random(seed * 1_000_003 + number)
    source = seeds[rng.randrange(len(seeds))]
    if source.startswith(b"PK") and rng.random() < 0.4:
        repacked = _repacked_zip(source, rng)
        if repacked is not None:
            return repacked
    data = bytearray(source)
    _mutate_bytes(data, rng)
    if rng.random() < 0.15:
        other = seeds[rng.randrange(len(seeds))]
        start = rng.randrange(len(other))
        data[rng.randrange(len(data) + 1):] = other[start:start + rng.randint(1, 256)]
    if rng.random() < 0.15:
        del data[rng.randrange(len(data) + 1):]
    return bytes(data)


# ----- the worker ----------------------------------------------------------------------------


def _pickle_io_calls(path: str) -> List[Callable[[], Any]]:
    import pickle_io
    from pickle_io.scan import scan

    return [lambda: pickle_io.load(path), lambda: pickle_io.load(path, mmap=False),
            lambda: pickle_io.inspect(path), lambda: scan(path)]


def _oracle_calls(target: str, path: str) -> List[Callable[[], Any]]:
    """FUNCTION(path) for a target named "MODULE:FUNCTION" (another reader, to compare with)."""
    import importlib

    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return [lambda: function(path)]


def _outcome(error: BaseException) -> Tuple[str, bool]:
    """(outcome name, foreign?) of an exception; a MemoryError anywhere in its chain counts as
    one, even where pickle_io wrapped it."""
    import pickle_io

    chain: Optional[BaseException] = error
    while chain is not None:
        if isinstance(chain, MemoryError):
            return "MemoryError", True
        chain = chain.__context__
    return type(error).__name__, not isinstance(error, pickle_io.PickleIOError)


def _worker(connection: Any, target: str, memory_mb: int) -> None:
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    directory = tempfile.mkdtemp(prefix="pickle_io_fuzz_")
    path = os.path.join(directory, "case.bin")
    calls = _pickle_io_calls(path) if target == "pickle_io" else _oracle_calls(target, path)
    while True:
        data = connection.recv_bytes()
        with open(path, "wb") as file:
            file.write(data)
        results = []
        for call in calls:
            try:
                call()
                results.append(("ok", False))
            except Exception as error:  # noqa: BLE001  (counting them is the point)
                results.append(_outcome(error))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        connection.send((results, peak))


class _Worker:
    def __init__(self, target: str, memory_mb: int) -> None:
        context = multiprocessing.get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, target, memory_mb), daemon=True)
        self.process.start()
        child.close()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()


def run_fuzz(cases: int, *, seeds: Optional[List[bytes]] = None, target: str = "pickle_io",
             seed: int = 0, timeout: float = 10.0, memory_mb: int = 2048,
             progress: Optional[Callable[[int], None]] = None) -> Report:
    """Run `cases` mutated cases against `target` and count what happened."""
    seeds = seeds or builtin_seeds()
    report = Report(target)
    started = time.monotonic()
    worker = _Worker(target, memory_mb)
    try:
        for number in range(cases):
            data = make_case(seeds, seed, number)
            worker.connection.send_bytes(data)
            if not worker.connection.poll(timeout if number else timeout + 60):  # imports
                report.hangs += 1
                report.examples.setdefault("hang", number)
                worker.stop()
                worker = _Worker(target, memory_mb)
                continue
            try:
                results, peak = worker.connection.recv()
            except EOFError:
                worker.process.join()
                signal = f"signal {-worker.process.exitcode}" if (
                    worker.process.exitcode or 0) < 0 else f"exit {worker.process.exitcode}"
                report.crashes[signal] += 1
                report.examples.setdefault(signal, number)
                worker.stop()
                worker = _Worker(target, memory_mb)
                continue
            report.peak_rss_mb = max(report.peak_rss_mb, peak)
            for name, foreign in results:
                report.outcomes[name] += 1
                if foreign and target == "pickle_io":
                    report.foreign[name] += 1
                    report.examples.setdefault(name, number)
            if progress and number % 1000 == 999:
                progress(number + 1)
        report.cases = cases
    finally:
        worker.stop()
    report.seconds = time.monotonic() - started
    return report


def _read_seeds(directory: Optional[str]) -> Optional[List[bytes]]:
    if directory is None:
        return None
    files = sorted(path for path in Path(directory).rglob("*") if path.is_file())
    seeds = [path.read_bytes() for path in files if 0 < path.stat().st_size <= 2**22]
    if not seeds:
        raise SystemExit(f"{directory}: no seed files (non-empty, at most 4 MiB)")
    return seeds


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pickle_io.fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seeds", help="folder of seed files (default: built-in seeds)")
    parser.add_argument("--target", default="pickle_io",
                        help="pickle_io, or MODULE:FUNCTION taking a path (torch:load to compare)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same cases per seed)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a hang")
    parser.add_argument("--memory-mb", type=int, default=2048, help="worker memory limit")
    args = parser.parse_args(argv)
    if args.target != "pickle_io" and ":" not in args.target:
        parser.error(f"--target {args.target!r}: expected pickle_io or MODULE:FUNCTION (e.g. torch:load)")
    seeds = _read_seeds(args.seeds)
    report = run_fuzz(args.cases, seeds=seeds, target=args.target, seed=args.seed,
                      timeout=args.timeout, memory_mb=args.memory_mb,
                      progress=lambda done: print(f"  {done} cases", file=sys.stderr, flush=True))
    print(f"seeds: {len(seeds) if seeds else len(builtin_seeds())} "
          f"({args.seeds or 'built-in'}), random seed {args.seed}")
    print(report.text())
    bad = report.hangs + sum(report.crashes.values()) + sum(report.foreign.values())
    return 1 if bad and args.target == "pickle_io" else 0


if __name__ == "__main__":
    sys.exit(main())
