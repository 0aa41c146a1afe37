"""The writer's fast paths against torch.load as the oracle: many tensors (memo indices past
256, pickle batches past 1000, writev batches past IOV_MAX), arrays numpy owns with their views
(storages grouped by owner, no address sweep), the second hashing thread, short writes, and the
file preallocation."""

from __future__ import annotations

import collections
import gc
import os
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pickle_io
from pickle_io import atomic_file, zipformat
from tests.pickle_io_helpers import TORCH_DTYPES, dtype_name, random_tensor, torch_bytes
from tests.test_pickle_io_roundtrip import make_view, pickle_io_array


def many_tensors(count: int) -> "collections.OrderedDict":
    rng = np.random.default_rng(count)
    state = collections.OrderedDict()
    for index in range(count):
        shape = [(8,), (2, 3), (), (1, 4)][index % 4]
        state[f"layers.{index}.weight"] = rng.standard_normal(shape).astype(
            [np.float32, np.float16, np.int64][index % 3])
    return state


def same_storage(first: torch.Tensor, second: torch.Tensor) -> bool:
    return first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()


@pytest.mark.parametrize("form", ["zip", "legacy"])
def test_many_tensors_load_in_torch_bit_exact(tmp_path, form):
    state = many_tensors(2500)  # 5000 buffers in the legacy writev, 2500 storages, memo > 256
    state["tied"] = state["layers.7.weight"]
    path = tmp_path / "many.bin"
    pickle_io.save(state, path, format=form)
    for mmap in (False, True) if form == "zip" else (False,):
        loaded = torch.load(path, weights_only=True, mmap=mmap)
        assert list(loaded) == list(state)
        for name, array in state.items():
            assert loaded[name].shape == array.shape
            assert torch_bytes(loaded[name]) == array.tobytes()
        assert loaded["tied"] is loaded["layers.7.weight"]
    if form == "zip":
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None


def numpy_view(base: np.ndarray, kind: int) -> np.ndarray:
    """What `make_view(tensor, kind)` is of a tensor, as a numpy view of `base`."""
    flat = base.reshape(-1)
    if kind == 0 or flat.size < 2:
        return base
    if kind == 1:
        return flat[1:]
    if kind == 2:
        return flat[::2]
    if kind == 3 and base.ndim >= 2:
        return base.swapaxes(0, 1)
    if kind == 4:
        return np.broadcast_to(flat[-1:], (3, 2))  # zero strides
    return flat[1:].reshape(-1, 1)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dtype=st.sampled_from(TORCH_DTYPES),
       shape=st.lists(st.integers(0, 4), max_size=3).map(tuple), data=st.binary(min_size=1, max_size=64), kind=st.integers(0, 5))
def test_views_of_arrays_numpy_owns_share_their_storage(tmp_path_factory, dtype, shape, data, kind):
    """An owned base array and a view of it (sliced, strided, transposed, broadcast): one
    storage in the file, with torch's offsets and strides."""
    base = random_tensor(data, dtype, shape)
    view = make_view(base, kind)
    base_array = pickle_io_array(base).copy()  # owned: the plan groups by owner alone
    assert base_array.base is None
    view_array = numpy_view(base_array, kind)
    path = tmp_path_factory.mktemp("owned") / "m.bin"
    pickle_io.save({"base": base_array, "view": view_array}, path)
    loaded = torch.load(path, weights_only=True, mmap=True)
    assert torch_bytes(loaded["base"]) == torch_bytes(base)
    assert torch_bytes(loaded["view"]) == torch_bytes(view)
    assert loaded["view"].dtype == dtype and tuple(loaded["view"].shape) == view_array.shape
    if view_array.size > 1:
        assert loaded["view"].stride() == view.stride()
    if view_array.size and base_array.size:
        assert same_storage(loaded["view"], loaded["base"])
        assert loaded["view"].storage_offset() == view.storage_offset()


def test_disjoint_owned_arrays_get_storages_of_their_own(tmp_path):
    first, second = np.arange(6.0), np.arange(6.0, 12.0)
    pickle_io.save({"a": first, "b": second, "a_again": first[2:]}, tmp_path / "m.bin")
    with zipfile.ZipFile(tmp_path / "m.bin") as archive:
        assert sorted(name for name in archive.namelist() if "/data/" in name) == [
            "archive/data/0", "archive/data/1"]
    loaded = torch.load(tmp_path / "m.bin", weights_only=True)
    assert loaded["a_again"].storage_offset() == 2
    assert same_storage(loaded["a_again"], loaded["a"])


def test_arrays_over_one_foreign_buffer_share_a_storage(tmp_path):
    """Two arrays over one bytearray (neither has the other as base) overlap: one storage."""
    memory = bytearray(np.arange(10, dtype=np.int32).tobytes())
    whole = np.frombuffer(memory, np.int32)
    tail = np.frombuffer(memory, np.int32, offset=8)
    pickle_io.save({"whole": whole, "tail": tail}, tmp_path / "m.bin")
    loaded = torch.load(tmp_path / "m.bin", weights_only=True)
    assert same_storage(loaded["tail"], loaded["whole"])
    assert loaded["tail"].storage_offset() == 2 and loaded["tail"].tolist() == list(range(2, 10))


def test_large_payloads_hashed_by_the_second_thread(tmp_path, monkeypatch):
    """Lowered thresholds send every payload of 4 KiB or more to the hashing thread."""
    monkeypatch.setattr(zipformat, "HASHED_ALONGSIDE", 4096)
    monkeypatch.setattr(zipformat, "OVERLAP_FROM", 4096)
    state = {"big": np.random.default_rng(0).standard_normal(300_000), "small": np.arange(3.0),
             "mid": np.arange(1024, dtype=np.float32)}
    pickle_io.save(state, tmp_path / "m.bin")
    with zipfile.ZipFile(tmp_path / "m.bin") as archive:
        assert archive.testzip() is None
    loaded = torch.load(tmp_path / "m.bin", weights_only=True, mmap=True)
    for name, array in state.items():
        assert torch_bytes(loaded[name]) == array.tobytes()


@pytest.mark.parametrize("form", ["zip", "legacy"])
def test_short_writes_are_resumed(tmp_path, monkeypatch, form):
    """A kernel that writes at most 1000 bytes per writev call (as a full pipe or a signal
    might make it) still gets every byte, in order."""
    real_writev = os.writev
    calls = []

    def short_writev(fd, buffers):
        calls.append(len(buffers))
        budget, pieces = 1000, []
        for buffer in buffers:
            piece = memoryview(buffer)[:budget]
            pieces.append(piece)
            budget -= len(piece)
            if not budget:
                break
        return real_writev(fd, pieces)

    monkeypatch.setattr(os, "writev", short_writev)
    state = {"a": np.arange(5000, dtype=np.int16), "b": np.ones((3, 7)), "empty": np.zeros(0)}
    pickle_io.save(state, tmp_path / "m.bin", format=form)
    assert len(calls) > 10
    loaded = torch.load(tmp_path / "m.bin", weights_only=True)
    for name, array in state.items():
        assert torch_bytes(loaded[name]) == array.tobytes()


def test_writev_all_splits_at_iov_max(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_file, "IOV_MAX", 3)
    buffers = [bytes([index]) * index for index in range(10)] + [memoryview(b"end")]
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        atomic_file.writev_all(fd, buffers)
    finally:
        os.close(fd)
    assert (tmp_path / "out").read_bytes() == b"".join(bytes(buffer) for buffer in buffers)


def test_preallocation_reserves_and_is_optional(tmp_path, monkeypatch):
    fd = os.open(tmp_path / "reserved", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        reserved = atomic_file.preallocate(fd, 1 << 20)
        assert not atomic_file.preallocate(fd, 0)
    finally:
        os.close(fd)
    if reserved:  # Linux, a file system with fallocate
        assert (tmp_path / "reserved").stat().st_size == 1 << 20
    state = {"w": np.arange(100_000, dtype=np.float32)}
    pickle_io.save(state, tmp_path / "with.bin")
    monkeypatch.setattr(atomic_file, "_libc_fallocate", lambda: None)  # elsewhere: none
    pickle_io.save(state, tmp_path / "without.bin")
    monkeypatch.setattr(atomic_file, "_libc_fallocate", lambda: lambda *arguments: -1)  # EOPNOTSUPP
    pickle_io.save(state, tmp_path / "refused.bin")
    assert ((tmp_path / "with.bin").read_bytes() == (tmp_path / "without.bin").read_bytes()
            == (tmp_path / "refused.bin").read_bytes())
    loaded = torch.load(tmp_path / "with.bin", weights_only=True)
    assert torch_bytes(loaded["w"]) == state["w"].tobytes()


@pytest.mark.parametrize("enabled", [True, False])
def test_save_and_load_restore_the_garbage_collector(tmp_path, enabled):
    (tmp_path / "bad.bin").write_bytes(b"PK\x03\x04 not a zip")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        pickle_io.save({"w": np.ones(3)}, tmp_path / "ok.bin")
        assert gc.isenabled() is enabled
        with pytest.raises(pickle_io.PickleIOError):
            pickle_io.save({"w": object()}, tmp_path / "bad.bin")
        assert gc.isenabled() is enabled
        assert pickle_io.load(tmp_path / "ok.bin")["w"].tolist() == [1, 1, 1]
        with pickle_io.open(tmp_path / "ok.bin") as checkpoint:
            assert list(checkpoint) == ["w"]
        assert gc.isenabled() is enabled
        for read in (pickle_io.load, pickle_io.open):
            with pytest.raises(pickle_io.CheckpointError):
                read(tmp_path / "bad.bin")
            assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_dtype_names_match_torch(tmp_path):
    """Every dtype through the planner's cached name lookup, in both byte orders."""
    for dtype in TORCH_DTYPES:
        array = pickle_io_array(random_tensor(b"\x01\x02\x03", dtype, (3,))).copy()
        arrays = {"native": array}
        if array.dtype.itemsize > 1 and array.dtype.kind in "fiuc":
            arrays["swapped"] = array.astype(array.dtype.newbyteorder(">"))
        pickle_io.save(arrays, tmp_path / "d.bin")
        loaded = torch.load(tmp_path / "d.bin", weights_only=True)
        for tensor in loaded.values():
            assert dtype_name(tensor.dtype) == dtype_name(dtype)
            assert torch_bytes(tensor) == array.tobytes()
