"""Several processes registering overlapping files at once (multiprocessing, spawn)."""

import multiprocessing
import os
import random
import tomllib

from bridge.artifacts import ArtifactStore

WORKERS = 4
CONTENTS = 6


def register_all(root, sources, worker, barrier):
    """One worker: the shared names in its own order, plus a name of its own for each content."""
    store = ArtifactStore(root)
    jobs = [(path, f"shared/{os.path.basename(path)}") for path in sources]
    jobs += [(path, f"worker{worker}/{os.path.basename(path)}") for path in sources]
    random.Random(worker).shuffle(jobs)
    barrier.wait()
    for path, name in jobs:
        store.register_file(path, name)


def test_concurrent_registrations_leave_one_copy_and_a_complete_toml(tmp_path):
    root = tmp_path / "store"
    sources = []
    for index in range(CONTENTS):
        path = tmp_path / f"file{index}.bin"
        path.write_bytes(os.urandom(200_000 + index))
        sources.append(str(path))

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    processes = [
        context.Process(target=register_all, args=(str(root), sources, worker, barrier)) for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0] * WORKERS

    with open(root / "Artifacts.toml", "rb") as file:
        table = tomllib.load(file)
    expected_names = {f"shared/file{i}.bin" for i in range(CONTENTS)}
    expected_names |= {f"worker{w}/file{i}.bin" for w in range(WORKERS) for i in range(CONTENTS)}
    assert set(table) == expected_names

    store = ArtifactStore(root)
    for name in expected_names:
        source = tmp_path / os.path.basename(name)
        assert store.resolve(name).read_bytes() == source.read_bytes()
    inodes = {store.resolve(name).stat().st_ino for name in expected_names}
    assert len(inodes) == CONTENTS  # one copy of each content
    assert len(os.listdir(root / "artifacts")) == CONTENTS
    assert len(os.listdir(root / "blobs")) == CONTENTS
    assert os.listdir(root / ".staging") == []  # no debris
    assert sorted(os.listdir(root)) == [
        ".staging", "Artifacts.toml", "Artifacts.toml.lock", "Artifacts.toml.previous", "artifacts", "blobs"
    ]
    assert store.verify() == []
