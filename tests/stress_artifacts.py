"""Stress run of the artifact store, for the figures in docs/artifacts.md (not collected by pytest:
the suite runs one round of each in test_artifacts_concurrency.py and test_artifacts_store.py).

    PYTHONPATH=. python tests/stress_artifacts.py [--rounds 20] [--processes 10] [--kills 50]

Part 1: ROUNDS rounds of PROCESSES processes registering 7 overlapping files each under shared and
own names at once (14 registrations a process). Part 2: KILLS processes killed with SIGKILL at a
random moment, half while registering a 32 MiB file, half while downloading it from the local Hub
server. After each round and each kill: every expected name resolves to the right bytes, no other
name exists, verify() is clean, the manifest's integrity trailer holds, gc() removes only debris.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from test_artifacts_concurrency import register_all  # noqa: E402  (one worker for the test and this run)

CONTENTS = 7


def concurrency(rounds: int, processes: int, work: Path) -> dict:
    from bridge.artifacts import ArtifactStore

    outcome = {"rounds": rounds, "processes": processes, "registrations": 0, "failed processes": 0,
               "names lost": 0, "wrong bytes": 0, "verify problems": 0, "extra copies": 0}
    context = multiprocessing.get_context("spawn")
    for round_number in range(rounds):
        root = work / f"round{round_number}"
        sources = []
        for index in range(CONTENTS):
            path = work / f"file{index}.bin"
            if not path.exists():
                path.write_bytes(os.urandom(100_000 + index))
            sources.append(str(path))
        barrier = context.Barrier(processes)
        workers = [context.Process(target=register_all, args=(str(root), sources, w, barrier)) for w in range(processes)]
        for process in workers:
            process.start()
        for process in workers:
            process.join(timeout=300)
        outcome["failed processes"] += sum(process.exitcode != 0 for process in workers)
        outcome["registrations"] += processes * 2 * CONTENTS
        store = ArtifactStore(root)
        expected = {f"shared/file{i}.bin" for i in range(CONTENTS)}
        expected |= {f"worker{w}/file{i}.bin" for w in range(processes) for i in range(CONTENTS)}
        names = set(store.names())
        outcome["names lost"] += len(expected - names) + len(names - expected)
        for name in expected & names:
            outcome["wrong bytes"] += store.resolve(name).read_bytes() != Path(work, os.path.basename(name)).read_bytes()
        outcome["verify problems"] += len(store.verify())
        outcome["extra copies"] += len(os.listdir(root / "blobs")) - CONTENTS
    return outcome


REGISTER_BIG = "import sys; from bridge.artifacts import ArtifactStore; ArtifactStore().register_file(sys.argv[1], 'victim/big.bin')"
DOWNLOAD_BIG = "import sys; from bridge.hub import fetch_file; fetch_file('org/big', 'model.safetensors')"


def kills(count: int, work: Path) -> dict:
    from bridge.artifacts import ArtifactStore
    from hubserver import HubServer

    outcome = {"kills": count, "mid-registration": 0, "mid-download": 0, "partial names": 0,
               "damaged manifests": 0, "finished before the kill": 0, "verify problems": 0, "debris left after gc": 0, "retry failed": 0}
    big = work / "big.bin"
    big.write_bytes(os.urandom(32 * 2**20))
    server = HubServer(work / "hub-repos").start()
    server.add_file("org/big", "model.safetensors", big.read_bytes())
    rng = random.Random(0)
    for kill in range(count):
        env = dict(os.environ, HGF_BRIDGE_HOME=str(work / f"kill{kill}" / "store"),
                   HF_HUB_CACHE=str(work / f"kill{kill}" / "hub"), HF_ENDPOINT=server.endpoint,
                   HF_HUB_DISABLE_PROGRESS_BARS="1")
        downloading = kill % 2 == 1
        if downloading:
            server.set_fault("org/big", "model.safetensors", "stall")
        child = subprocess.Popen([sys.executable, "-c", DOWNLOAD_BIG if downloading else REGISTER_BIG, str(big)], env=env)
        time.sleep(rng.uniform(0.3, 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        outcome["mid-download" if downloading else "mid-registration"] += 1
        server.faults.clear()
        os.environ.update(env)
        store = ArtifactStore()
        try:
            names = store.names()
        except Exception:  # a damaged manifest would land here
            outcome["damaged manifests"] += 1
            continue
        expected_name = "org/big/model.safetensors" if downloading else "victim/big.bin"
        outcome["partial names"] += any(name != expected_name for name in names)
        outcome["finished before the kill"] += expected_name in names
        outcome["verify problems"] += len(store.verify())
        store.gc()
        staging = store.root / ".staging"
        outcome["debris left after gc"] += len(os.listdir(staging)) if staging.exists() else 0
        try:  # the killed job, run again, completes
            if downloading:
                from bridge.hub import fetch_file

                ok = fetch_file("org/big", "model.safetensors").read_bytes() == big.read_bytes()
            else:
                store.register_file(big, "victim/big.bin")
                ok = store.resolve("victim/big.bin").read_bytes() == big.read_bytes()
        except Exception:
            ok = False
        outcome["retry failed"] += not ok
    server.stop()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--kills", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stress-artifacts-") as work:
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        start = time.monotonic()
        print(concurrency(args.rounds, args.processes, Path(work)), flush=True)
        print(kills(args.kills, Path(work)), flush=True)
        print(f"{time.monotonic() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
