"""What every benchmark module shares: a result row and one way to time a call.

Each `benchmarks/bench_<area>.py` defines `run(quick: bool) -> list[Row]`, timing our code and its
peer side by side in the same process, so that noise on a shared machine hits both alike.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional


@dataclass
class Row:
    area: str  # "pickle_io", "models", "artifacts", "tokenizer"
    what: str  # e.g. "load(mmap=True), BERT-base zip"
    ours_s: float
    peer: str  # e.g. "torch.load(weights_only=True, mmap=True)"
    peer_s: float
    target: Optional[float]  # the ratio ours/peer must be at most this; None: a figure to report
    note: str = ""
    median_ratio: Optional[float] = None  # the median of paired ratios, where rows have one

    @property
    def ratio(self) -> float:
        return self.median_ratio if self.median_ratio is not None else self.ours_s / self.peer_s


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


@dataclass
class Pairs:
    """Times of two calls made in alternation: ours[i] and peer[i] ran back to back."""

    ours: List[float]
    peer: List[float]

    @property
    def ours_s(self) -> float:
        return statistics.median(self.ours)

    @property
    def peer_s(self) -> float:
        return statistics.median(self.peer)

    @property
    def ratios(self) -> List[float]:
        return [ours / peer for ours, peer in zip(self.ours, self.peer)]

    @property
    def ratio(self) -> float:
        """The median of the paired ratios: a burst of load slows one pair, not the figure."""
        return statistics.median(self.ratios)

    @property
    def spread(self) -> str:
        return f"{min(self.ratios):.2f}x-{max(self.ratios):.2f}x over {len(self.ours)} pairs"


def rounds(calls: Dict[str, Callable[[], object]], repeat: int = 5,
           before: Optional[Callable[[], object]] = None,
           warmup: bool = True) -> Dict[str, List[float]]:
    """`repeat` rounds of timed calls, each round calling every one of `calls` once (the order
    rotating from round to round, so none always runs first), after one untimed call of each
    (unless warmup is False); `before`, when given, runs untimed ahead of every timed call.
    Returns each call's times, round by round."""
    if warmup:
        for call in calls.values():
            call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(repeat):
        shift = round_index % len(names)  # each call takes each place in the order in turn
        for name in names[shift:] + names[:shift]:
            if before is not None:
                before()
            times[name].append(best_of(calls[name], repeat=1, warmup=0))
    return times


def alternating(ours: Callable[[], object], peer: Callable[[], object], repeat: int = 5,
                before: Optional[Callable[[], object]] = None, warmup: bool = True) -> Pairs:
    """`repeat` pairs of timed calls, ours then peer (see `rounds`)."""
    times = rounds({"ours": ours, "peer": peer}, repeat, before, warmup)
    return Pairs(times["ours"], times["peer"])
