"""Small hostile files that once crashed, hung or exhausted pickle_io: each is generated here
and must now give a PickleIOError (or load), quickly and within bounded memory."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import pickle_io
from bridge.cli import main as hgf
from pickle_io.fuzz import run_fuzz
from pickle_io.scan import UNSAFE, scan, verdict

CALLS = {
    "load": lambda path: pickle_io.load(path),
    "load(mmap=False)": lambda path: pickle_io.load(path, mmap=False),
    "inspect": lambda path: pickle_io.inspect(path),
    "open": lambda path: pickle_io.open(path).close(),
}


def zip_checkpoint(path: Path, data_pkl: bytes, records: dict = None, *,
                   compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        for name, payload in (records or {}).items():
            archive.writestr(f"archive/{name}", payload)
        archive.writestr("archive/version", "3\n")
    return path


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run code in a child, so a crash (SIGSEGV) fails the test instead of killing pytest."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent.parent)


def float_tensor_pickle(key: str = "0", numel: int = 4) -> bytes:
    """Opcodes of one _rebuild_tensor_v2 of FloatStorage `key` (leaves the tensor on the stack)."""
    return (b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
            + b"X" + struct.pack("<I", len(key)) + key.encode() + b"X\x03\x00\x00\x00cpu"
            + b"K" + bytes([numel]) + b"tQK\x00K" + bytes([numel]) + b"\x85K\x01\x85\x89"
            b"ccollections\nOrderedDict\n)RtR")


def test_million_deep_tuple_as_key_does_not_crash(tmp_path):
    deep = b"\x80\x02}N" + b"\x85" * 1_000_000 + b"K\x01s."  # {((((None,),),)...): 1}
    for name, data in (("zip.bin", None), ("plain.pkl", deep)):
        path = tmp_path / name
        if data is None:
            zip_checkpoint(path, deep)
        else:
            path.write_bytes(data)
        result = run_isolated(
            "import pickle_io, sys\n"
            f"for call in (pickle_io.load, pickle_io.inspect, pickle_io.open):\n"
            f"    try: call({str(path)!r})\n"
            "    except pickle_io.CheckpointError as error: assert 'deeper than 1000' in str(error)\n"
            "    else: sys.exit('no error')\n")
        assert result.returncode == 0, (result.returncode, result.stderr[-500:])


def test_depth_limit_is_documented_and_can_be_raised(tmp_path):
    nested = b"\x80\x02" + b"]" * 1500 + b"a" * 1499 + b"."
    path = zip_checkpoint(tmp_path / "deep.bin", nested)
    for call in CALLS.values():
        with pytest.raises(pickle_io.CheckpointError, match="LIMITS.max_depth"):
            call(path)
    old = pickle_io.LIMITS.max_depth
    pickle_io.LIMITS.max_depth = 2000
    try:
        value = pickle_io.load(path)
        for _ in range(1499):
            value = value[0]
        assert value == []
    finally:
        pickle_io.LIMITS.max_depth = old


def test_self_referencing_list(tmp_path):
    path = zip_checkpoint(tmp_path / "cycle.bin", b"\x80\x02]q\x00h\x00a.")  # l = [l]
    loaded = pickle_io.load(path)
    assert loaded[0] is loaded
    assert pickle_io.inspect(path).tensors == []
    cycle_through_dict = b"\x80\x02}q\x00(X\x01\x00\x00\x00ah\x00X\x01\x00\x00\x00w" + \
        float_tensor_pickle() + b"u."
    path = zip_checkpoint(tmp_path / "cycle2.bin", cycle_through_dict,
                          {"data/0": np.arange(4, dtype=np.float32).tobytes()})
    assert [t.name for t in pickle_io.inspect(path).tensors] == ["w"]
    with pickle_io.open(path) as ckpt:
        assert ckpt["a"] is not None
    assert pickle_io.load(path)["a"]["a"]["w"][3] == 3


def test_shared_lists_sixty_levels_deep_visit_each_object_once(tmp_path):
    # l0 = [tensor]; l(i+1) = [l(i), l(i)]: 2**60 paths through 61 lists, in under 1 KB.
    data = b"\x80\x02](" + float_tensor_pickle() + b"eq\x00"
    for level in range(60):
        data += b"0](h" + bytes([level]) + b"h" + bytes([level]) + b"eq" + bytes([level + 1])
    data += b"."
    assert len(data) < 1000
    path = zip_checkpoint(tmp_path / "shared.bin", data,
                          {"data/0": np.arange(4, dtype=np.float32).tobytes()})
    names = [t.name for t in pickle_io.inspect(path).tensors]
    assert names == ["0." * 60 + "0"]
    assert scan(path) == []
    loaded = pickle_io.load(path, mmap=False)
    assert loaded[0] is loaded[1]
    with pytest.raises(pickle_io.PickleIOError, match="state dict"):
        pickle_io.open(path)


def test_deflate_bomb_is_refused_before_inflating(tmp_path):
    path = zip_checkpoint(tmp_path / "bomb.bin", b"\x80\x02N" + bytes(50 * 2**20) + b".",
                          compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 200_000
    for call in CALLS.values():
        with pytest.raises(pickle_io.CheckpointError, match="max_inflate_ratio"):
            call(path)
    assert not verdict(scan(path)) == 0


def test_deflated_record_past_its_declared_size_is_refused(tmp_path):
    path = zip_checkpoint(tmp_path / "lie.bin", b"\x80\x02K\x01." + b"N" * 5000,
                          compression=zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"PK\x01\x02", 0, raw.rindex(b"archive/data.pkl"))
    struct.pack_into("<L", raw, entry + 24, 4)  # the directory says 4 bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(pickle_io.CheckpointError, match="directory says 4"):
        pickle_io.load(path)


def test_overlapping_zip_entries_are_refused(tmp_path):
    torch.save({"a": torch.ones(1000)}, tmp_path / "ok.bin")
    raw = (tmp_path / "ok.bin").read_bytes()
    end = raw.rindex(b"PK\x05\x06")
    (_, _, _, _, count, size, start, _) = struct.unpack_from("<4sHHHHLLH", raw, end)
    directory = raw[start:start + size]
    entry = directory.index(b"PK\x01\x02", directory.index(b"ok/data.pkl") - 46)
    name_length, extra_length, comment_length = struct.unpack_from("<HHH", directory, entry + 28)
    record = directory[entry:entry + 46 + name_length + extra_length + comment_length]
    copies = b"".join(record.replace(b"ok/data.pkl", f"ok/x{index:05}.pkl".encode()[:11])
                      for index in range(400))
    new_directory = directory + copies
    tail = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, count + 400, count + 400,
                       len(new_directory), start, 0)
    (tmp_path / "overlap.bin").write_bytes(raw[:start] + new_directory + tail)
    for call in CALLS.values():
        with pytest.raises(pickle_io.CheckpointError, match="share one local header"):
            call(tmp_path / "overlap.bin")
    assert scan(tmp_path / "overlap.bin")


def test_payload_running_into_the_next_entry_is_refused(tmp_path):
    path = zip_checkpoint(tmp_path / "m.bin", b"\x80\x02" + float_tensor_pickle() + b".",
                          {"data/0": np.arange(4, dtype=np.float32).tobytes()})
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(b"PK\x01\x02", 0, raw.rindex(b"archive/data/0"))
    struct.pack_into("<LL", raw, entry + 20, 200, 200)  # sizes reaching into the next entry
    path.write_bytes(bytes(raw))
    with pytest.raises(pickle_io.CheckpointError, match="overlaps the next entry"):
        pickle_io.load(path, mmap=False)


def test_colliding_int_keys_are_bounded(tmp_path):
    prime = 2**61 - 1  # hash(k * prime) == 0 for every k
    items = b"".join(b"\x8a\x0a" + (k * prime).to_bytes(10, "little", signed=True) + b"N"
                     for k in range(1, 5000))
    path = zip_checkpoint(tmp_path / "collide.bin", b"\x80\x02}(" + items + b"u.")
    for call in CALLS.values():
        with pytest.raises(pickle_io.CheckpointError, match="share a hash value"):
            call(path)
    control = b"".join(b"\x8a\x09" + k.to_bytes(9, "little", signed=True) + b"N"
                       for k in range(1, 5000))
    assert len(pickle_io.load(zip_checkpoint(tmp_path / "c.bin", b"\x80\x02}(" + control
                                             + b"u."))) == 4999


def test_foreign_exceptions_become_checkpoint_errors(tmp_path):
    huge = (10**5000).to_bytes(2100, "little")
    cases = {
        "huge int key": b"\x80\x02}\x8b" + struct.pack("<i", len(huge)) + huge + b"K\x01s.",
        "BUILD items": b"\x80\x02ccollections\nOrderedDict\n)R}X\x05\x00\x00\x00itemsK\x01sb.",
        "BUILD get": b"\x80\x02ccollections\nOrderedDict\n)R}X\x03\x00\x00\x00getK\x01sb.",
        "tensor key": b"\x80\x02}" + float_tensor_pickle() + b"K\x01s.",
    }
    for name, data in cases.items():
        path = zip_checkpoint(tmp_path / "f.bin", data,
                              {"data/0": np.arange(4, dtype=np.float32).tobytes()})
        if name == "huge int key":  # legal, if odd: it loads, and inspect names it
            assert list(pickle_io.load(path)) == [10**5000]
            pickle_io.inspect(path)
            continue
        for call_name, call in CALLS.items():
            with pytest.raises(pickle_io.CheckpointError):
                call(path)
    header = json.dumps({"t": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}})
    path = tmp_path / "s.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode())
    for mmap in (True, False):
        with pytest.raises(pickle_io.CheckpointError):
            pickle_io.load(path, mmap=mmap)
    pickle_io.inspect(path)


SCAN_MISSES = {
    "REDUCE on a storage class": b"\x80\x02ctorch\nFloatStorage\nK\x03\x85R.",
    "NEWOBJ on a storage class": b"\x80\x02ctorch\nFloatStorage\n)\x81.",
    "_codecs rot13": b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.",
    "_codecs zlib": b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R.",
    "BUILD __class__": b"\x80\x02ccollections\nOrderedDict\n)R}X\t\x00\x00\x00__class__Nsb.",
}


@pytest.mark.parametrize("name", list(SCAN_MISSES))
def test_scan_reports_everything_load_refuses(tmp_path, name):
    path = zip_checkpoint(tmp_path / "x.bin", SCAN_MISSES[name])
    with pytest.raises(pickle_io.UnsafePickleError):
        pickle_io.load(path)
    findings = scan(path)
    assert findings and verdict(findings) == UNSAFE


def test_cli_escapes_control_characters(tmp_path, capsys):
    name = "w\x1b[2K\rUNSAFE nothing\n\u202efake"
    pickle_io.save({name: np.ones(2, np.float32)}, tmp_path / "m.bin")
    assert hgf(["inspect", "--scan", str(tmp_path / "m.bin")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert "\\x1b[2K\\rUNSAFE nothing\\n\\u202efake" in out
    assert all(not line.startswith("UNSAFE") for line in out.splitlines())
    evil = zip_checkpoint(tmp_path / "e.bin", b"\x80\x04\x8c\x0aos\n\x1b[31mhi\x8c\x06system\x93.")
    assert hgf(["inspect", "--scan", str(evil)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "os\\n\\x1b[31mhi.system" in out


def test_fast_fuzz_only_raises_pickle_io_errors():
    report = run_fuzz(400, seed=11)
    assert report.cases == 400 and report.hangs == 0, report.text()
    assert not report.crashes and not report.foreign, report.text()
    assert report.outcomes["ok"] > 0 and report.peak_rss_mb < 1024
