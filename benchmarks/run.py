"""Print the benchmark table: our code against its peer, side by side in one run.

    python benchmarks/run.py [--quick] [--only AREA ...]

Every row is a ratio (our time / the peer's time) measured in this one process, so a busy machine
slows both sides; absolute seconds are printed for context only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

AREAS = ("pickle_io", "models", "artifacts", "tokenizer")


def describe_machine() -> str:
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"(threads {torch.get_num_threads()}), numpy {numpy.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", nargs="+", choices=AREAS, default=AREAS)
    args = parser.parse_args()

    rows = []
    for area in args.only:
        try:
            module = importlib.import_module(f"bench_{area}")
        except ModuleNotFoundError as error:
            print(f"(skipping {area}: {error})", file=sys.stderr)
            continue
        rows += module.run(quick=args.quick)

    print(f"Machine: {describe_machine()}\n")
    print("| area | what | ours (s) | peer | peer (s) | ratio | target | met |")
    print("|---|---|---:|---|---:|---:|---:|:-:|")
    for row in rows:
        if row.target is None:
            target, met = "none", "-"
        else:
            target, met = f"<= {row.target:.2f}x", "yes" if row.ratio <= row.target else "NO"
        note = f" ({row.note})" if row.note else ""
        print(
            f"| {row.area} | {row.what}{note} | {row.ours_s:.4f} | {row.peer} | {row.peer_s:.4f} "
            f"| {row.ratio:.2f}x | {target} | {met} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
