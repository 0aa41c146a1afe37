"""pickle_io against torch as the oracle: torch.save -> pickle_io.load and pickle_io.save ->
torch.load, bit-exact, with shapes, strides, offsets and storage sharing kept."""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pickle_io
from pickle_io import zipformat
from tests.pickle_io_helpers import (
    LEGACY_DTYPES,
    HandTensor,
    TORCH_DTYPES,
    assert_same_tensor,
    dtype_name,
    element_offset,
    numpy_bytes,
    random_tensor,
    torch_bytes,
    write_legacy_by_hand,
)

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
payloads = st.binary(min_size=1, max_size=64)


def make_view(base: torch.Tensor, kind: int) -> torch.Tensor:
    """A view of `base` exercising offsets, steps, transposes and zero strides."""
    flat = base.reshape(-1)
    if kind == 0 or flat.numel() < 2:
        return base
    if kind == 1:
        return flat[1:]
    if kind == 2:
        return flat[::2]
    if kind == 3 and base.dim() >= 2:
        return base.transpose(0, 1)
    if kind == 4:
        return flat[-1:].expand(3, 2)  # zero strides
    return flat[1:].reshape(-1, 1)


@SETTINGS
@given(dtype=st.sampled_from(TORCH_DTYPES), shape=shapes, data=payloads, kind=st.integers(0, 5),
       legacy=st.booleans(), mmap=st.booleans())
def test_torch_save_then_our_load(dtype, shape, data, kind, legacy, mmap):
    assume(not legacy or dtype in LEGACY_DTYPES)  # torch's legacy writer lacks the v3 dtypes
    base = random_tensor(data, dtype, shape)
    view = make_view(base, kind)
    state = collections.OrderedDict(base=base, view=view, again=view)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.bin")
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        loaded = pickle_io.load(path, mmap=mmap)
    assert list(loaded) == ["base", "view", "again"]
    assert_same_tensor(loaded["base"], base)
    assert_same_tensor(loaded["view"], view)
    assert loaded["again"] is loaded["view"]  # the same tensor twice is one object
    assert loaded["base"].flags.writeable != mmap
    if view.numel() and base.numel():
        assert np.shares_memory(loaded["base"], loaded["view"])
        assert element_offset(loaded["view"], loaded["base"]) == view.storage_offset()


@SETTINGS
@given(dtype=st.sampled_from(TORCH_DTYPES), shape=shapes, data=payloads, kind=st.integers(0, 5),
       legacy=st.booleans(), mmap=st.booleans())
def test_our_save_then_torch_load(dtype, shape, data, kind, legacy, mmap):
    assume(not legacy or dtype in LEGACY_DTYPES)
    base = random_tensor(data, dtype, shape)
    view = make_view(base, kind)
    base_array = pickle_io_array(base)
    view_array = base_array_view(base_array, base, view)
    state = collections.OrderedDict(base=base_array, view=view_array)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.bin")
        pickle_io.save(state, path, format="legacy" if legacy else "zip")
        loaded = torch.load(path, weights_only=True, mmap=mmap and not legacy)
    assert torch_bytes(loaded["base"]) == torch_bytes(base)
    assert torch_bytes(loaded["view"]) == torch_bytes(view)
    assert loaded["view"].stride() == view.stride() or view.numel() <= 1
    assert loaded["view"].dtype == dtype and loaded["view"].shape == view.shape
    if view.numel() and base.numel():
        assert loaded["view"].untyped_storage().data_ptr() == loaded["base"].untyped_storage().data_ptr()
        assert loaded["view"].storage_offset() == view.storage_offset()


def pickle_io_array(tensor: torch.Tensor) -> np.ndarray:
    """The numpy array with the tensor's bytes (via the raw bytes: torch has no bf16 numpy)."""
    dtype = np.dtype(pickle_io.dtypes.numpy_dtype(dtype_name(tensor.dtype)))
    return np.frombuffer(bytearray(torch_bytes(tensor)), dtype).reshape(tuple(tensor.shape))


def base_array_view(base_array: np.ndarray, base: torch.Tensor, view: torch.Tensor) -> np.ndarray:
    """The numpy view of base_array that `view` is of `base`."""
    if view.numel() == 0:
        return base_array.reshape(-1)[:0].reshape(tuple(view.shape))
    itemsize = base_array.itemsize
    return np.ndarray(tuple(view.shape), base_array.dtype, buffer=base_array,
                      offset=view.storage_offset() * itemsize,
                      strides=tuple(s * itemsize for s in view.stride()))


def test_state_dict_metadata_is_an_attribute_and_survives(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    state = model.state_dict()
    torch.save(state, tmp_path / "a.bin")
    loaded = pickle_io.load(tmp_path / "a.bin")
    assert loaded._metadata == state._metadata
    assert "_metadata" not in loaded
    pickle_io.save(loaded, tmp_path / "b.bin")
    again = torch.load(tmp_path / "b.bin", weights_only=True)
    assert again._metadata == state._metadata
    model.load_state_dict(again)


def test_nested_python_values_round_trip(tmp_path):
    value = {"ints": [0, 1, 255, 256, 65535, 65536, -1, 2**31, -(2**31) - 1, 2**100],
             "floats": (0.5, float("inf"), -0.0), "text": "héllo ✓", "bytes": b"\x00\xff",
             "empty": [b"", bytearray(), ""],
             "nested": {1: [None, True, False, ()], (1, 2): {"a"}}, "complex": 1 + 2j,
             "bytearray": bytearray(b"ab")}
    pickle_io.save(value, tmp_path / "v.bin")
    assert torch.load(tmp_path / "v.bin", weights_only=True) == value
    assert pickle_io.load(tmp_path / "v.bin") == value
    torch.save(value, tmp_path / "t.bin")
    assert pickle_io.load(tmp_path / "t.bin") == value


def test_torch_size_device_parameter_and_numpy_scalars(tmp_path):
    parameter = torch.nn.Parameter(torch.arange(4.0))
    torch.save({"p": parameter, "size": torch.Size([2, 3]), "device": torch.device("cpu")},
               tmp_path / "t.bin")
    loaded = pickle_io.load(tmp_path / "t.bin")
    assert_same_tensor(loaded["p"], parameter)
    assert loaded["size"] == (2, 3) and loaded["device"] == "cpu"
    pickle_io.save({"step": np.int64(7), "lr": np.float32(0.5)}, tmp_path / "s.bin")
    back = torch.load(tmp_path / "s.bin", weights_only=True)
    assert back["step"].dtype == torch.int64 and back["step"].dim() == 0 and back["step"] == 7


@pytest.mark.parametrize("protocol", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("legacy", [False, True])
def test_every_pickle_protocol_torch_writes(tmp_path, protocol, legacy):
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16)}
    state["t"] = state["a"].T
    torch.save(state, tmp_path / "m.bin", pickle_protocol=protocol,
               _use_new_zipfile_serialization=not legacy)
    loaded = pickle_io.load(tmp_path / "m.bin")
    for name in state:
        assert_same_tensor(loaded[name], state[name])


@pytest.mark.parametrize("protocol", range(0, 6))
def test_plain_python_pickles_of_every_protocol(tmp_path, protocol):
    """A zip checkpoint whose data.pkl Python's own pickle wrote (pickle.loads is the oracle:
    we made the data ourselves, so it is safe to run)."""
    value = {"a": [1, 2.5, "x", None, True, (1, 2, 3, 4)], "b": {3, 4}, "c": -(2**70),
             "d": b"bytes", "e": frozenset([1]), "f": 2.5j, "g": [[]] * 2}
    data = pickle.dumps(value, protocol=protocol)
    with zipfile.ZipFile(tmp_path / "p.bin", "w") as archive:
        archive.writestr("p/data.pkl", data)
        archive.writestr("p/version", "3\n")
    assert pickle_io.load(tmp_path / "p.bin") == pickle.loads(data)


def test_our_output_is_deterministic(tmp_path):
    state = {"w": np.arange(100, dtype=np.float32).reshape(10, 10), "b": np.ones(3, np.int8)}
    state["tied"] = state["w"]
    digests = set()
    for name in ("one.bin", "two.bin"):
        pickle_io.save(dict(state), tmp_path / name)
        digests.add(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert len(digests) == 1


def test_payloads_are_64_byte_aligned_and_crcs_valid(tmp_path):
    state = {f"t{i}": np.arange(i + 1, dtype=np.float64) for i in range(5)}
    pickle_io.save(state, tmp_path / "a.bin")
    with zipfile.ZipFile(tmp_path / "a.bin") as archive:
        assert archive.testzip() is None  # every CRC-32 checks out
        for info in archive.infolist():
            with archive.open(info) as entry:
                assert entry._fileobj.tell() % 64 == 0  # where the payload starts


def test_tied_weights_stored_once(tmp_path):
    embedding = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    pickle_io.save({"wte": embedding, "lm_head": embedding, "T": embedding.T}, tmp_path / "t.bin")
    with zipfile.ZipFile(tmp_path / "t.bin") as archive:
        storages = [name for name in archive.namelist() if "/data/" in name]
    assert len(storages) == 1
    loaded = torch.load(tmp_path / "t.bin", weights_only=True)
    assert loaded["wte"] is loaded["lm_head"]
    assert loaded["T"].untyped_storage().data_ptr() == loaded["wte"].untyped_storage().data_ptr()


def test_load_then_save_keeps_storage_layout(tmp_path):
    """torch views over one storage (q, k, v of one weight) come back sharing it."""
    qkv = torch.randn(6, 4)
    state = {"q": qkv[0:2], "k": qkv[2:4], "v": qkv[4:6]}
    torch.save(state, tmp_path / "a.bin")
    pickle_io.save(pickle_io.load(tmp_path / "a.bin"), tmp_path / "b.bin")
    loaded = torch.load(tmp_path / "b.bin", weights_only=True, mmap=True)
    assert len({loaded[n].untyped_storage().data_ptr() for n in state}) == 1
    assert [loaded[n].storage_offset() for n in state] == [0, 8, 16]


def test_big_endian_deflated_and_prefixed_archives(tmp_path):
    """Rewrite a torch file with byteorder big (storages swapped), DEFLATED entries and junk
    before the archive; the values must still be torch's."""
    state = {"f": torch.randn(3, 2), "c": torch.randn(2, dtype=torch.complex64),
             "h": torch.randn(4, dtype=torch.bfloat16), "i": torch.arange(3)}
    torch.save(state, tmp_path / "orig.bin")
    with zipfile.ZipFile(tmp_path / "orig.bin") as source, zipfile.ZipFile(
            tmp_path / "big.bin", "w", compression=zipfile.ZIP_DEFLATED) as target:
        pickled = pickle_io.load(tmp_path / "orig.bin")
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                key = info.filename.rsplit("/", 1)[1]
                owner = next(n for n in state if pickled[n].base is not None and
                             os.path.basename(info.filename) == key and
                             numpy_bytes(pickled[n]) == data)
                dtype = pickled[owner].dtype
                unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
                data = np.frombuffer(data, f"<u{unit}").astype(f">u{unit}").tobytes()
            target.writestr(info.filename, data)
    prefixed = tmp_path / "prefixed.bin"
    prefixed.write_bytes(b"#!junk before the archive\n" + (tmp_path / "big.bin").read_bytes())
    for path in (tmp_path / "big.bin", prefixed):
        for mmap in (True, False):
            loaded = pickle_io.load(path, mmap=mmap)
            for name in state:
                assert_same_tensor(loaded[name], state[name])


def test_zip64_path_read_by_torch_and_zipfile(tmp_path, monkeypatch):
    """Lowering the ZIP64 threshold to 0 makes every size and offset a ZIP64 field (and adds the
    ZIP64 end records), the same code path a > 4 GiB file takes."""
    monkeypatch.setattr(zipformat, "ZIP64_LIMIT", 0)
    state = {"a": np.arange(1000, dtype=np.float32), "b": np.ones((3, 3), np.int16)}
    pickle_io.save(state, tmp_path / "z.bin")
    with zipfile.ZipFile(tmp_path / "z.bin") as archive:
        assert archive.testzip() is None
        assert all(info.file_size == len(archive.read(info)) for info in archive.infolist())
    raw = (tmp_path / "z.bin").read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw
    for mmap in (True, False):
        loaded = torch.load(tmp_path / "z.bin", weights_only=True, mmap=mmap)
        assert torch_bytes(loaded["a"]) == numpy_bytes(state["a"])
    assert numpy_bytes(pickle_io.load(tmp_path / "z.bin")["b"]) == numpy_bytes(state["b"])


def test_reads_zip64_written_by_python_zipfile(tmp_path):
    torch.save({"a": torch.arange(10)}, tmp_path / "t.bin")
    with zipfile.ZipFile(tmp_path / "t.bin") as source, zipfile.ZipFile(
            tmp_path / "z.bin", "w") as target:
        for info in source.infolist():
            with target.open(info.filename, "w", force_zip64=True) as entry:
                entry.write(source.read(info))
    assert_same_tensor(pickle_io.load(tmp_path / "z.bin")["a"], torch.arange(10))


@pytest.mark.parametrize("protocol", [2, 4])
def test_hand_built_legacy_files_like_pickle_jl(tmp_path, protocol):
    """Pickle.jl's writer: object-id storage keys, the key list unsorted, an OrderedDict whose
    _metadata comes by BUILD; plus an old-style storage view. torch.load is the oracle."""
    root = np.arange(10, dtype=np.float32).tobytes()
    halves = np.arange(6, dtype=np.float16).tobytes()
    float_storage, half_storage = torch.FloatStorage, torch.HalfStorage
    state = collections.OrderedDict()
    state["w"] = HandTensor((("storage", float_storage, "140235", "cpu", 10, None)), 0, (2, 5), (5, 1))
    state["wT"] = HandTensor((("storage", float_storage, "140235", "cpu", 10, None)), 0, (5, 2), (1, 5))
    state["view"] = HandTensor(("storage", float_storage, "140235", "cpu", 10, ("9999", 2, 6)),
                               1, (3,), (2,))
    state["h"] = HandTensor(("storage", half_storage, "77", "cpu", 6, None), 2, (2, 2), (2, 1))
    state._metadata = {"version": 1}
    path = tmp_path / "jl.bin"
    write_legacy_by_hand(path, state, {"77": (halves, 2), "140235": (root, 4)}, protocol=protocol)
    # weights_only cannot parse protocol 4 frames; the file is our own, so a full load is safe.
    expected = torch.load(path, weights_only=protocol == 2)
    for mmap in (True, False):
        loaded = pickle_io.load(path, mmap=mmap)
        assert loaded._metadata == expected._metadata == {"version": 1}
        for name in expected:
            assert_same_tensor(loaded[name], expected[name])
        assert np.shares_memory(loaded["w"], loaded["view"])


def test_open_is_lazy_and_matches_load(tmp_path):
    state = {f"layer{i}.weight": torch.randn(4, 4) for i in range(3)}
    state["tied"] = state["layer0.weight"]
    for legacy in (False, True):
        path = tmp_path / f"m{legacy}.bin"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        with pickle_io.open(path) as checkpoint:
            assert list(checkpoint.keys()) == list(state)
            info = checkpoint.info("layer1.weight")
            assert (info.dtype, info.shape, info.nbytes) == (np.dtype(np.float32), (4, 4), 64)
            assert checkpoint.info("tied").storage_key == checkpoint.info("layer0.weight").storage_key
            assert_same_tensor(checkpoint["layer2.weight"], state["layer2.weight"])
            assert np.shares_memory(checkpoint["tied"], checkpoint["layer0.weight"])


def test_inspect_reads_no_data_and_matches_torch(tmp_path):
    state = {"a": torch.zeros(3, 5, dtype=torch.float16), "b": torch.zeros((), dtype=torch.int64),
             "nested": {"c": torch.zeros(0, 2)}}
    torch.save(state, tmp_path / "m.bin")
    summary = pickle_io.inspect(tmp_path / "m.bin")
    assert [(t.name, t.dtype, t.shape, t.nbytes) for t in summary.tensors] == [
        ("a", "float16", (3, 5), 30), ("b", "int64", (), 8), ("nested.c", "float32", (0, 2), 0)]
    assert summary.total_bytes == 38 and summary.format == "zip"


def test_failed_save_leaves_nothing(tmp_path):
    with pytest.raises(pickle_io.PickleIOError, match="object"):
        pickle_io.save({"ok": np.ones(3), "bad": object()}, tmp_path / "x.bin")
    with pytest.raises(pickle_io.PickleIOError, match="legacy"):
        pickle_io.save({"f8": np.ones(2, pickle_io.dtypes.numpy_dtype("float8_e4m3fn"))},
                       tmp_path / "y.bin", format="legacy")
    assert list(tmp_path.iterdir()) == []


def test_pickle_io_never_imports_torch(tmp_path):
    torch.save({"a": torch.ones(2)}, tmp_path / "t.bin")
    code = (
        "import sys, numpy as np, pickle_io\n"
        f"d = pickle_io.load({str(tmp_path / 't.bin')!r})\n"
        f"pickle_io.save(d, {str(tmp_path / 'o.bin')!r})\n"
        f"pickle_io.save(d, {str(tmp_path / 'l.bin')!r}, format='legacy')\n"
        f"pickle_io.save_sharded(d, {str(tmp_path / 'sh')!r}, format='safetensors')\n"
        f"pickle_io.load_sharded({str(tmp_path / 'sh')!r})\n"
        f"pickle_io.inspect({str(tmp_path / 'l.bin')!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_tensors_with_python_attributes(tmp_path):
    """torch pickles these through _rebuild_from_type_v2 and _rebuild_parameter_with_state."""
    plain = torch.arange(3.0)
    plain.note = "attribute"
    parameter = torch.nn.Parameter(torch.ones(2, 2))
    parameter.tag = 1
    torch.save({"t": plain, "p": parameter}, tmp_path / "m.bin")
    assert b"_rebuild_from_type_v2" in (tmp_path / "m.bin").read_bytes()
    loaded = pickle_io.load(tmp_path / "m.bin")
    assert_same_tensor(loaded["t"], plain)
    assert_same_tensor(loaded["p"], parameter)


def test_crcs_hashed_alongside_the_writes_are_valid(tmp_path, monkeypatch):
    """With the threshold at 1 byte every record is hashed by the second thread and its CRC
    filled in after the writes; zipfile checks every CRC."""
    monkeypatch.setattr(zipformat, "HASHED_ALONGSIDE", 1)
    monkeypatch.setattr(zipformat, "OVERLAP_FROM", 1)
    state = {"a": np.random.default_rng(1).standard_normal(1000), "b": np.arange(3, dtype=np.int8)}
    pickle_io.save(state, tmp_path / "m.bin")
    with zipfile.ZipFile(tmp_path / "m.bin") as archive:
        assert archive.testzip() is None


def test_large_tensor_round_trip(tmp_path):
    big = torch.randn(5_000_000)  # 20 MB: several CRC pieces, one large payload write
    torch.save({"big": big, "half": big[::2]}, tmp_path / "t.bin")
    loaded = pickle_io.load(tmp_path / "t.bin")
    assert_same_tensor(loaded["half"], big[::2])
    pickle_io.save(loaded, tmp_path / "o.bin")
    with zipfile.ZipFile(tmp_path / "o.bin") as archive:
        assert archive.testzip() is None
    again = torch.load(tmp_path / "o.bin", weights_only=True, mmap=True)
    assert torch.equal(again["big"], big) and again["half"].stride() == (2,)


def test_open_materialises_nested_values(tmp_path):
    weight = torch.randn(3, 3)
    torch.save({"model": {"w": weight}, "steps": [1, weight[0]], "epoch": 3}, tmp_path / "c.bin")
    with pickle_io.open(tmp_path / "c.bin") as checkpoint:
        assert checkpoint["epoch"] == 3
        assert_same_tensor(checkpoint["model"]["w"], weight)
        assert_same_tensor(checkpoint["steps"][1], weight[0])
        with pytest.raises(pickle_io.PickleIOError, match="not a tensor"):
            checkpoint.info("epoch")
    with pytest.raises(pickle_io.PickleIOError, match="closed"):
        checkpoint["model"]


def test_missing_byteorder_record_means_little_endian(tmp_path):
    state = {"x": torch.randn(4, dtype=torch.float64)}
    torch.save(state, tmp_path / "t.bin")
    with zipfile.ZipFile(tmp_path / "t.bin") as source, zipfile.ZipFile(
            tmp_path / "old.bin", "w") as target:
        for info in source.infolist():
            if not info.filename.endswith("/byteorder"):  # as torch < 2.1 wrote them
                target.writestr(info.filename, source.read(info))
    assert_same_tensor(pickle_io.load(tmp_path / "old.bin")["x"], state["x"])


class _HolePayload:
    """A payload of `nbytes` zero bytes that is never written: the file keeps a sparse hole."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def _crc32_of_zeros(count: int) -> int:
    from isal.isal_zlib import crc32_combine

    crc, block, length = 0, zlib.crc32(b"\0"), 1
    while count:
        if count & 1:
            crc = crc32_combine(crc, block, length)
        block, length = crc32_combine(block, block, length), length * 2
        count >>= 1
    return crc


def test_real_zip64_file_over_4_gib_sparse(tmp_path):
    """A 5 GiB uint8 tensor and a small one after it (its header offset beyond 4 GiB): the
    writer's own layout, headers and central directory, with the big payload left as a sparse
    hole so nothing is written. torch.load(mmap=True) and zipfile read it; so do we."""
    from pickle_io.pickler import Pickler
    from pickle_io.storage_plan import PlannedStorage, PlannedTensor
    from pickle_io.torch_zip import zip_persistent_id

    big_size = 5 * 2**30 + 3
    assert _crc32_of_zeros(12345) == zlib.crc32(bytes(12345))
    small = np.arange(5, dtype=np.int16)
    big_storage = PlannedStorage("0", "uint8", big_size, _HolePayload(big_size))
    small_storage = PlannedStorage("1", "int16", 5, memoryview(small).cast("B"))
    big_marker, small_marker = np.empty(0), np.empty(0)  # stand-ins the pickler looks up by id
    tensors = {id(big_marker): PlannedTensor(big_storage, 0, (big_size,), (1,)),
               id(small_marker): PlannedTensor(small_storage, 0, (5,), (1,))}
    pickle_bytes = Pickler(tensors, zip_persistent_id).dump({"big": big_marker, "small": small_marker})
    records = [("archive/data.pkl", memoryview(pickle_bytes)), ("archive/byteorder", memoryview(b"little")),
               ("archive/data/0", big_storage.data), ("archive/data/1", small_storage.data),
               ("archive/version", memoryview(b"3\n"))]
    placed, directory_start = zipformat.place_records(records)
    path = tmp_path / "huge.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        os.ftruncate(fd, directory_start)  # a hole: the 5 GiB of zeros take no disk space
        crcs = []
        for record in placed:
            if isinstance(record.payload, _HolePayload):
                crcs.append(_crc32_of_zeros(record.payload.nbytes))
            else:
                os.pwrite(fd, record.payload, record.payload_offset)
                crcs.append(zlib.crc32(record.payload))
        zipformat.write_headers(fd, placed, crcs, directory_start)
    finally:
        os.close(fd)
    assert placed[3].header_offset > 2**32
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("archive/data/0").file_size == big_size
        assert archive.read("archive/data/1") == small.tobytes()  # CRC checked
    theirs = torch.load(path, weights_only=True, mmap=True)
    ours = pickle_io.load(path)
    assert theirs["big"].shape == (big_size,) and ours["big"].shape == (big_size,)
    assert int(theirs["big"][-1]) == 0 == int(ours["big"][-1])
    assert_same_tensor(ours["small"], theirs["small"])
    assert numpy_bytes(ours["small"]) == small.tobytes()


@pytest.mark.parametrize("form", ["zip", "legacy", "safetensors"])
def test_writable_load_is_copy_on_write(tmp_path, form):
    """writable=True: zero-copy arrays that can be written, sharing kept, and the file untouched."""
    from safetensors.torch import save_file

    weight = torch.randn(4, 3)
    path = tmp_path / f"m.{form}"
    if form == "safetensors":
        save_file({"w": weight, "b": torch.arange(3.0)}, path)
    else:
        torch.save({"w": weight, "tied": weight, "column": weight[:, 1]}, path,
                   _use_new_zipfile_serialization=form == "zip")
    original = path.read_bytes()
    loaded = pickle_io.load(path, writable=True)
    assert loaded["w"].flags.writeable and not pickle_io.load(path)["w"].flags.writeable
    assert_same_tensor(loaded["w"], weight)
    loaded["w"][0, 1] = 1234.0
    if form != "safetensors":
        assert loaded["tied"][0, 1] == 1234.0 and loaded["column"][0] == 1234.0
    assert path.read_bytes() == original
    assert_same_tensor(pickle_io.load(path)["w"], weight)
    assert pickle_io.load_sharded(path, writable=True)["w"].flags.writeable
