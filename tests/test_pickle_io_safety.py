"""pickle_io refuses hostile checkpoints without running any of their code, and malformed input
only ever raises PickleIOError."""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pickle_io
from pickle_io.scan import scan

SENTINEL_NAME = "pwned"


def sentinel(tmp_path: Path) -> Path:
    return tmp_path / SENTINEL_NAME


class SystemCall:
    """Pickles as os.system(command) via REDUCE, the classic payload."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalCall:
    def __init__(self, function, source: str) -> None:
        self.function, self.source = function, source

    def __reduce__(self):
        return (self.function, (self.source,))


def touch_command(tmp_path: Path) -> str:
    return f"touch {sentinel(tmp_path)}"


def touch_python(tmp_path: Path) -> str:
    return f"open({str(sentinel(tmp_path))!r}, 'w').close()"


def zip_checkpoint(path: Path, data_pkl: bytes, extra: dict = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def payloads(tmp_path: Path) -> dict:
    command, source = touch_command(tmp_path), touch_python(tmp_path)
    inst = (b"(S'" + command.encode() + b"'\nios\nsystem\n.")
    stack_global = (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93"
                    b"\x8c" + bytes([len(command)]) + command.encode() + b"\x85R.")
    return {
        "os.system REDUCE (protocol 2)": pickle.dumps({"w": SystemCall(command)}, protocol=2),
        "os.system REDUCE (protocol 0)": pickle.dumps(SystemCall(command), protocol=0),
        "builtins.eval": pickle.dumps(EvalCall(eval, source), protocol=2),
        "builtins.exec": pickle.dumps(EvalCall(exec, source), protocol=3),
        "builtins.getattr": b"\x80\x02cbuiltins\ngetattr\ncos\nsystem\nX\x04\x00\x00\x00nope\x86R.",
        "STACK_GLOBAL (protocol 4)": stack_global,
        "INST": inst,
        "payload before a broken pickle": pickle.dumps(SystemCall(command), protocol=2)[:-1]
        + b"\xff\xff garbage",
        "subclass trick torch.nn.Module": b"\x80\x02ctorch.nn\nModule\n)R.",
        "submodule trick": b"\x80\x02ctorch._utils.os\nsystem\nX\x01\x00\x00\x00xR.",
    }


@pytest.mark.parametrize("name", list(payloads(Path("/x"))))
def test_classic_payloads_refused_and_not_executed(tmp_path, name):
    data = payloads(tmp_path)[name]
    path = zip_checkpoint(tmp_path / "evil.bin", data)
    for call in (lambda: pickle_io.load(path), lambda: pickle_io.load(path, mmap=False),
                 lambda: pickle_io.inspect(path), lambda: pickle_io.open(path)):
        with pytest.raises(pickle_io.PickleIOError):
            call()
    assert scan(path), "scan must report it"
    assert not sentinel(tmp_path).exists()


def test_forbidden_global_names_the_global_and_file(tmp_path):
    path = zip_checkpoint(tmp_path / "evil.bin", payloads(tmp_path)["os.system REDUCE (protocol 2)"])
    with pytest.raises(pickle_io.UnsafePickleError, match=r"evil.bin.*(posix|os)\.system"):
        pickle_io.load(path)


def test_payload_in_a_legacy_file(tmp_path):
    torch.save({"a": torch.ones(2)}, tmp_path / "ok.bin", _use_new_zipfile_serialization=False)
    raw = (tmp_path / "ok.bin").read_bytes()
    magic_end = raw.index(b".") + 1
    # Splice an os.system payload in as the protocol-version pickle.
    evil = raw[:magic_end] + pickle.dumps(SystemCall(touch_command(tmp_path)), protocol=2) + raw[magic_end:]
    (tmp_path / "evil.bin").write_bytes(evil)
    with pytest.raises(pickle_io.UnsafePickleError):
        pickle_io.load(tmp_path / "evil.bin")
    assert not sentinel(tmp_path).exists()


def test_never_imports_a_module(tmp_path, monkeypatch):
    module = tmp_path / "importme_sentinel_mod.py"
    module.write_text(f"open({str(sentinel(tmp_path))!r}, 'w').close()\nvalue = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = zip_checkpoint(tmp_path / "evil.bin", b"\x80\x02cimportme_sentinel_mod\nvalue\n.")
    with pytest.raises(pickle_io.UnsafePickleError, match="importme_sentinel_mod.value"):
        pickle_io.load(path)
    assert "importme_sentinel_mod" not in sys.modules and not sentinel(tmp_path).exists()


@pytest.mark.parametrize("entry", ["../evil", "/abs/evil", "archive/../../evil", "other/x"])
def test_zip_entries_outside_the_prefix_refused(tmp_path, entry):
    torch.save({"a": torch.ones(2)}, tmp_path / "ok.bin")
    with zipfile.ZipFile(tmp_path / "ok.bin") as source, zipfile.ZipFile(
            tmp_path / "evil.bin", "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
        info = zipfile.ZipInfo("placeholder")
        info.filename = entry  # bypass zipfile's own name cleaning
        target.writestr(info, b"x")
    with pytest.raises(pickle_io.CheckpointError, match="unsafe zip entry|outside"):
        pickle_io.load(tmp_path / "evil.bin")


def test_torchscript_archive_refused(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "ts.pt"))
    with pytest.raises(pickle_io.CheckpointError, match="TorchScript"):
        pickle_io.load(tmp_path / "ts.pt")
    assert any("TorchScript" in finding.what for finding in scan(tmp_path / "ts.pt"))


def test_7z_and_garbage_refused(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(100))
    with pytest.raises(pickle_io.CheckpointError, match="7z"):
        pickle_io.load(tmp_path / "a.bin")
    (tmp_path / "b.bin").write_bytes(b"")
    (tmp_path / "c.bin").write_bytes(b"hello world, not a checkpoint")
    for name in ("b.bin", "c.bin"):
        with pytest.raises(pickle_io.CheckpointError):
            pickle_io.load(tmp_path / name)


def _pickle_with_storage(numel_in_id: int, size: tuple, stride: tuple) -> bytes:
    """data.pkl for one float tensor over storage "0" with the given claims."""
    size_tuple = b"(" + b"".join(b"\x8a\x08" + struct.pack("<q", n) for n in size) + b"t"
    stride_tuple = b"(" + b"".join(b"\x8a\x08" + struct.pack("<q", n) for n in stride) + b"t"
    return (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(("
            b"X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
            + b"\x8a\x08" + struct.pack("<q", numel_in_id) + b"tQK\x00" + size_tuple + stride_tuple
            + b"\x89ccollections\nOrderedDict\n)RtR.")


@pytest.mark.parametrize("numel, size, stride, message", [
    (10**12, (10**12,), (1,), "holds 16 bytes"),  # a huge claimed storage: no allocation
    (4, (10**12,), (1,), "reaches element"),  # a huge tensor over a small storage
    (4, (2, 3), (3, 1), "reaches element"),  # one element past the end
    (4, (2**40, 2**40), (0, 0), "too big|maximum"),  # broadcast product overflows
    (4, (2,), (-1,), "negative"),
    (4, (2, -3), (1, 1), "negative"),  # a negative size after a valid one
    (4, (1,), (2**61,), "out of range"),  # in bounds, but its byte stride overflows numpy's intp
])
def test_sizes_are_checked_before_use(tmp_path, numel, size, stride, message):
    path = zip_checkpoint(tmp_path / "m.bin", _pickle_with_storage(numel, size, stride),
                          {"archive/data/0": np.arange(4, dtype=np.float32).tobytes()})
    with pytest.raises(pickle_io.CheckpointError, match=message):
        pickle_io.load(path)
    with pytest.raises(pickle_io.CheckpointError):
        pickle_io.load(path, mmap=False)


@pytest.mark.parametrize("opcode", [b"\xff", b"\x00", b"z"])
def test_unknown_opcode_named_with_its_position(tmp_path, opcode):
    data = b"\x80\x02K\x07" + opcode + b"."
    with pytest.raises(pickle.UnpicklingError):  # the oracle refuses it too
        pickle.loads(data)
    path = zip_checkpoint(tmp_path / "m.bin", data)
    with pytest.raises(pickle_io.CheckpointError,
                       match=rf"m\.bin: unknown pickle opcode {re.escape(repr(opcode))} at byte 4"):
        pickle_io.load(path)


def test_memo_index_bomb_is_just_a_key(tmp_path):
    # LONG_BINPUT 0xFFFFFFF0: the C unpickler would grow its memo array to 4 billion slots.
    path = zip_checkpoint(tmp_path / "m.bin", b"\x80\x02K\x07r\xf0\xff\xff\xff0j\xf0\xff\xff\xff.")
    assert pickle_io.load(path) == 7


def test_claimed_lengths_beyond_the_data(tmp_path):
    for data in (b"\x80\x04\x8d" + struct.pack("<Q", 2**60) + b"abc.",
                 b"\x80\x02X\xff\xff\xff\x7fabc.", b"\x80\x02\x8b\xff\xff\xff\x7f\x00."):
        path = zip_checkpoint(tmp_path / "m.bin", data)
        with pytest.raises(pickle_io.CheckpointError, match="truncated"):
            pickle_io.load(path)


def test_deflate_bomb_refused(tmp_path):
    torch.save({"a": torch.zeros(1000)}, tmp_path / "ok.bin")
    with zipfile.ZipFile(tmp_path / "ok.bin") as source, zipfile.ZipFile(
            tmp_path / "bomb.bin", "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    raw = bytearray((tmp_path / "bomb.bin").read_bytes())
    # Make the central directory understate data/0's size: 4000 bytes claimed as 40.
    entry = raw.rindex(b"PK\x01\x02", 0, raw.rindex(b"ok/data/0"))
    struct.pack_into("<L", raw, entry + 24, 40)
    (tmp_path / "bomb.bin").write_bytes(bytes(raw))
    with pytest.raises(pickle_io.CheckpointError, match="inflates to more than 40|inflates to"):
        pickle_io.load(tmp_path / "bomb.bin")


def _seed_files() -> list:
    """Small real checkpoints to mutate: torch zip and legacy, and ours."""
    seeds = []
    state = {"w": torch.randn(3, 4), "b": torch.arange(3), "h": torch.ones(2, dtype=torch.bfloat16)}
    state["wT"] = state["w"].T
    for legacy in (False, True):
        buffer = io.BytesIO()
        torch.save(state, buffer, _use_new_zipfile_serialization=not legacy)
        seeds.append(buffer.getvalue())
    with tempfile.TemporaryDirectory() as directory:
        pickle_io.save({"a": np.ones((2, 2)), "t": (1, "x", None)}, Path(directory) / "o.bin")
        seeds.append((Path(directory) / "o.bin").read_bytes())
    return seeds


SEEDS = _seed_files()


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(range(len(SEEDS))),
       edits=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255), st.integers(0, 2)),
                      min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 2**20)))
def test_fuzzed_checkpoints_only_raise_pickle_io_errors(tmp_path_factory, seed, edits, cut):
    data = bytearray(SEEDS[seed])
    for position, value, kind in edits:
        position %= len(data)
        if kind == 0:
            data[position] = value
        elif kind == 1:
            data.insert(position, value)
        else:
            del data[position]
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = tmp_path_factory.getbasetemp() / "fuzz.bin"
    path.write_bytes(bytes(data))
    for call in (lambda: pickle_io.load(path), lambda: pickle_io.load(path, mmap=False),
                 lambda: pickle_io.inspect(path), lambda: scan(path)):
        try:
            call()
        except pickle_io.PickleIOError:
            pass


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("legacy", [False, True])
def test_scan_finds_nothing_in_clean_torch_files(tmp_path, protocol, legacy):
    """No false alarms: STACK_GLOBAL names traced through MEMOIZE/BINGET, sets, bytes, dtypes."""
    state = {"sd": torch.nn.Linear(3, 2).state_dict(), "b": b"xy", "s": {1, 2},
             "half": torch.ones(2, dtype=torch.bfloat16)}
    if not legacy:
        state["f8"] = torch.ones(2, dtype=torch.float8_e4m3fn)
    torch.save(state, tmp_path / "m.bin", pickle_protocol=protocol,
               _use_new_zipfile_serialization=not legacy)
    assert scan(tmp_path / "m.bin") == []


def test_scan_reports_a_payload_before_a_broken_pickle(tmp_path):
    data = pickle.dumps(SystemCall("true"), protocol=2)[:-1] + b"\xff\xff garbage"
    findings = scan(zip_checkpoint(tmp_path / "evil.bin", data))
    whats = [finding.what for finding in findings]
    assert any("system" in what for what in whats) and any("malformed" in what for what in whats)
