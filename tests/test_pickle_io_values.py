"""Values torch writes that pickle_io must read as torch.load does (torch is the oracle), or
refuse with an error that names them."""

from __future__ import annotations

import collections
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

import pickle_io
from pickle_io_helpers import assert_same_tensor


def torch_values(path):
    return torch.load(path, weights_only=True)


def test_conjugate_and_negative_bits_are_applied(tmp_path):
    base = torch.tensor([1 + 2j, -3 + 0.5j, 4 - 1j], dtype=torch.complex64)
    other = torch.tensor([5 - 6j, 7 + 8j], dtype=torch.complex64)
    state = {"conj": base.conj(), "neg": other.conj().imag, "plain": base,
             "conj2d": torch.tensor([[1 + 1j, 2 - 2j]], dtype=torch.complex128).conj()}
    assert base.conj().is_conj() and state["neg"].is_neg()
    for legacy in (False, True):
        path = tmp_path / f"c{legacy}.bin"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        expected = torch_values(path)
        for mmap in (True, False):
            loaded = pickle_io.load(path, mmap=mmap)
            for name, tensor in expected.items():
                resolved = tensor.resolve_conj().resolve_neg()
                np.testing.assert_array_equal(loaded[name], resolved.numpy(), err_msg=name)
        with pickle_io.open(path) as ckpt:
            assert ckpt.info("conj").conj and not ckpt.info("plain").conj
            np.testing.assert_array_equal(ckpt["neg"], expected["neg"].resolve_neg().numpy())


def test_unknown_tensor_metadata_is_refused(tmp_path):
    torch.save({"c": torch.tensor([1 + 1j]).conj()}, tmp_path / "m.bin")
    raw = bytearray((tmp_path / "m.bin").read_bytes())
    with zipfile.ZipFile(tmp_path / "m.bin") as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(name for name in records if name.endswith("data.pkl"))
    assert b"conj" in records[name]
    records[name] = records[name].replace(b"conj", b"zzzz")
    with zipfile.ZipFile(tmp_path / "x.bin", "w") as archive:
        for entry, payload in records.items():
            archive.writestr(entry, payload)
    del raw
    with pytest.raises(pickle_io.CheckpointError, match="unknown tensor metadata 'zzzz'"):
        pickle_io.load(tmp_path / "x.bin")


def test_meta_tensors_are_placeholders_that_save_writes_back(tmp_path):
    with torch.device("meta"):
        layer = torch.nn.Linear(3, 5)
    state = layer.state_dict()
    state["strided"] = torch.empty_strided((2, 3), (1, 2), device="meta", dtype=torch.float16)
    torch.save(state, tmp_path / "meta.bin")
    loaded = pickle_io.load(tmp_path / "meta.bin")
    for name, tensor in state.items():
        meta = loaded[name]
        assert isinstance(meta, pickle_io.MetaTensor)
        assert meta.shape == tuple(tensor.shape) and meta.stride == tensor.stride()
        assert meta.dtype.name == str(tensor.dtype).replace("torch.", "")
    summary = pickle_io.inspect(tmp_path / "meta.bin")
    assert {(t.name, t.shape, t.nbytes) for t in summary.tensors} == {
        (name, tuple(tensor.shape), 0) for name, tensor in state.items()}
    for form in ("zip", "legacy"):
        pickle_io.save(loaded, tmp_path / f"out-{form}.bin", format=form)
        again = torch_values(tmp_path / f"out-{form}.bin")
        for name, tensor in state.items():
            assert again[name].is_meta and again[name].shape == tensor.shape
            assert again[name].stride() == tensor.stride() and again[name].dtype == tensor.dtype


def _legacy_file_from_pickle(path, object_pickle: bytes) -> None:
    """A legacy-format file whose object pickle is given (no storages)."""
    out = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
    pickle.dump(1001, out, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, out, protocol=2)
    out.write(object_pickle)
    pickle.dump([], out, protocol=2)
    path.write_bytes(out.getvalue())


def test_python2_strings_decode_as_torch_does(tmp_path):
    raw = "Résumé ✓".encode("utf-8")
    # Python 2's pickle writes a str as BINSTRING / SHORT_BINSTRING of its bytes.
    obj = (b"\x80\x02}q\x00(U\x04nameq\x01T" + len(raw).to_bytes(4, "little") + raw
           + b"U\x03keyU\x01xu.")
    _legacy_file_from_pickle(tmp_path / "py2.bin", obj)
    # weights_only=True has no BINSTRING; this file is our own (no globals), so the full loader
    # is a safe oracle.
    assert pickle_io.load(tmp_path / "py2.bin") == torch.load(
        tmp_path / "py2.bin", weights_only=False) == {"name": "Résumé ✓", "key": "x"}
    # Bytes that are not UTF-8 (torch's default raises): read as latin-1, as encoding="latin1".
    _legacy_file_from_pickle(tmp_path / "latin.bin", b"\x80\x02U\x02\xff\xfe.")
    assert pickle_io.load(tmp_path / "latin.bin") == torch.load(
        tmp_path / "latin.bin", weights_only=True, encoding="latin1") == "\xff\xfe"


def test_python2_ordered_dict_of_lists(tmp_path):
    # lpips' .pth files: collections.OrderedDict([[key, value], ...]) (lists, not tuples).
    obj = (b"\x80\x02ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(X\x01\x00\x00\x00aK\x01e]q\x03"
           b"(X\x01\x00\x00\x00bK\x02ee\x85Rq\x04.")
    _legacy_file_from_pickle(tmp_path / "od.bin", obj)
    expected = torch_values(tmp_path / "od.bin")
    loaded = pickle_io.load(tmp_path / "od.bin")
    assert type(loaded) is collections.OrderedDict and list(loaded.items()) == list(expected.items())


@pytest.mark.parametrize("legacy", [False, True])
def test_bare_storages_are_arrays_of_their_dtype(tmp_path, legacy):
    tensor = torch.arange(6, dtype=torch.float32)
    state = {"typed": tensor.storage(), "t": tensor}
    if not legacy:  # torch.load cannot read an untyped storage back from a legacy file
        state["untyped"] = torch.arange(3, dtype=torch.int16).untyped_storage()
    path = tmp_path / "s.bin"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    expected = torch_values(path)
    for mmap in (True, False):
        loaded = pickle_io.load(path, mmap=mmap)
        assert loaded["typed"].dtype == np.float32
        np.testing.assert_array_equal(loaded["typed"], np.asarray(expected["typed"].tolist(),
                                                                  np.float32))
        if not legacy:
            assert loaded["untyped"].dtype == np.uint8
            assert loaded["untyped"].tobytes() == bytes(expected["untyped"].tolist())
        assert_same_tensor(loaded["t"], expected["t"])
    names = {t.name: t for t in pickle_io.inspect(path).tensors}
    assert names["typed"].shape == (6,) and names["typed"].nbytes == 24


@pytest.mark.parametrize("name, make", [
    ("sparse", lambda: torch.eye(3).to_sparse()),
    ("quantized", lambda: torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)),
    ("complex32", lambda: torch.ones(2, dtype=torch.complex32)),
    ("nested", lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])),
])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_unsupported_tensors_are_checkpoint_errors_naming_them(tmp_path, name, make):
    torch.save({"ok": torch.ones(1), name: make()}, tmp_path / "u.bin")
    torch_values(tmp_path / "u.bin")  # torch reads it: harmless, only unsupported here
    for call in (pickle_io.load, pickle_io.inspect, pickle_io.open):
        with pytest.raises(pickle_io.UnsupportedTensorError, match=f"tensor '{name}'.*not supported"):
            call(tmp_path / "u.bin")
    assert issubclass(pickle_io.UnsupportedTensorError, pickle_io.CheckpointError)


def test_save_refuses_what_torch_weights_only_cannot_read(tmp_path):
    buffer = io.BytesIO()
    torch.save({"f": frozenset({1})}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError):  # the oracle: torch refuses it
        torch.load(buffer, weights_only=True)
    for bad, message in [({"f": frozenset({1})}, "frozenset"),
                         ({"r": range(3)}, "range"),
                         ({"d": collections.defaultdict(int)}, "defaultdict"),
                         ([object()], "object")]:
        with pytest.raises(pickle_io.PickleIOError, match=message):
            pickle_io.save(bad, tmp_path / "x.bin")
        assert not (tmp_path / "x.bin").exists()
    deep = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(pickle_io.PickleIOError, match="deeper"):
        pickle_io.save(deep, tmp_path / "x.bin")
    shadow = collections.OrderedDict(a=1)
    shadow.items = 3
    with pytest.raises(pickle_io.PickleIOError, match="attribute 'items'"):
        pickle_io.save(shadow, tmp_path / "x.bin")
    fine = {"s": {1, 2}, "c": 1j, "b": bytearray(b"x"), "t": (1, [2])}
    pickle_io.save(fine, tmp_path / "ok.bin")
    assert torch_values(tmp_path / "ok.bin") == fine
