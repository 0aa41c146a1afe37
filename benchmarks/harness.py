"""What every benchmark module shares: a result row and one way to time a call.

Each `benchmarks/bench_<area>.py` defines `run(quick: bool) -> list[Row]`, timing our code and its
peer side by side in the same process, so that noise on a shared machine hits both alike.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class Row:
    area: str  # "pickle_io", "models", "artifacts", "tokenizer"
    what: str  # e.g. "load(mmap=True), BERT-base zip"
    ours_s: float
    peer: str  # e.g. "torch.load(weights_only=True, mmap=True)"
    peer_s: float
    target: Optional[float]  # the ratio ours/peer must be at most this; None: a figure to report
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours_s / self.peer_s


def best_of(call: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """The fastest of `repeat` timed calls, in seconds, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved(ours: Callable[[], object], peer: Callable[[], object], repeat: int = 5) -> tuple:
    """Best times of `ours` and `peer`, alternating calls so drifting machine load hits both."""
    ours(), peer()
    best_ours = best_peer = float("inf")
    for _ in range(repeat):
        best_ours = min(best_ours, best_of(ours, repeat=1, warmup=0))
        best_peer = min(best_peer, best_of(peer, repeat=1, warmup=0))
    return best_ours, best_peer
