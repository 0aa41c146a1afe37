"""Plain pickles (protocols 0-5) of builtins and numpy objects, read through pickle_io's own
machine; Python's pickle is the oracle. The values are those of Pickle.jl's own fixtures
(test/test_pkl/*.pkl in chengchingwen/Pickle.jl), generated here rather than copied."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest

import pickle_io
from bridge.cli import main as hgf
from pickle_io.scan import SAFE, UNREADABLE, UNSAFE, scan, verdict

# Pickle.jl's builtin_type_samples (test/runtests.jl).
BUILTIN_SAMPLES = {
    "str": "Julia!", "int": 42, "bool": {True: False, False: True}, "float": 3.1415926,
    "bytes": "1234²".encode(), "tuple": (1, 2.0, "3", b"4"), "set": {1, 2, 3, 12, 21},
    "bigint": 1234567890987654321012345678909876543210, "list": ["February", 14, 2012],
    "unicode": "Résumé",
}
MORE_BUILTINS = {"frozenset": frozenset({1, "a"}), "bytearray": bytearray(b"\x00\xff"),
                 "complex": 1.5 - 2j, "none": None, "nested": [[], {}, ()],
                 "ordered": collections.OrderedDict(b=1, a=2), "negative": -2**70,
                 "nan-free floats": [0.0, -1e308, 5e-324]}
rng = np.random.default_rng(0)
# Pickle.jl's numpy fixtures: arrays of several ranks, strings in both byte orders, scalars.
NUMPY_SAMPLES = {
    "test-np": rng.standard_normal((3, 5)),
    "test-np-multi": [rng.standard_normal((4, 3, 2)), rng.standard_normal((2, 3, 4, 2)).astype(np.float32)],
    "fortran": np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
    "test-np-string": {"little-endian": np.array(["abcde", "ghijkf"], dtype="<U6"),
                       "big-endian": np.array(["abcde", "ghijkf"], dtype=">U6")},
    "bytes-array": np.array([b"ab", b"c"], dtype="S3"),
    "test-np-end": [np.arange(6.0).reshape(2, 3).astype(">f8"), np.arange(3, dtype="<i4")],
    "test-np-scalar": [np.uint32(4), np.int64(6), np.float16(3), np.float64(5), np.str_("abcα😀")],
    "dtypes": [np.dtype(">i4"), np.dtype("c16"), np.dtype("M8[ns]"), np.dtype("bool")],
    "datetimes": np.array(["2024-01-02", "1999-12-31"], dtype="M8[D]"),
    "empty": np.zeros((0, 3), np.float32), "bool": np.array([True, False]),
}


def same(ours, theirs) -> bool:
    if isinstance(theirs, np.ndarray):
        return (type(ours) is np.ndarray and ours.dtype == theirs.dtype
                and ours.shape == theirs.shape and ours.tobytes("A") == theirs.tobytes("A")
                and ours.flags.f_contiguous == theirs.flags.f_contiguous)
    if isinstance(theirs, (np.generic, np.dtype)):
        return type(ours) is type(theirs) and ours == theirs and (
            not isinstance(theirs, np.generic) or ours.dtype == theirs.dtype)
    if isinstance(theirs, dict):
        return type(ours) is type(theirs) and list(ours) == list(theirs) and all(
            same(ours[key], theirs[key]) for key in theirs)
    if isinstance(theirs, (list, tuple)):
        return type(ours) is type(theirs) and len(ours) == len(theirs) and all(
            same(a, b) for a, b in zip(ours, theirs))
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("protocol", range(6))
def test_builtins_in_every_protocol(tmp_path, protocol):
    path = tmp_path / f"builtin_type_p{protocol}.pkl"
    path.write_bytes(pickle.dumps({**BUILTIN_SAMPLES, **MORE_BUILTINS}, protocol=protocol))
    expected = pickle.loads(path.read_bytes())
    assert same(pickle_io.load(path), expected)
    assert scan(path) == [] and verdict(scan(path)) == SAFE


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("name", list(NUMPY_SAMPLES))
def test_numpy_objects_in_every_protocol(tmp_path, protocol, name):
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(pickle.dumps(NUMPY_SAMPLES[name], protocol=protocol))
    expected = pickle.loads(path.read_bytes())
    loaded = pickle_io.load(path)
    assert same(loaded, expected), (loaded, expected)
    assert verdict(scan(path)) == SAFE


def test_numpy_1_module_spelling(tmp_path):
    data = pickle.dumps(np.arange(3.0), protocol=2).replace(b"numpy._core", b"numpy.core")
    (tmp_path / "old.pkl").write_bytes(data)
    assert b"numpy.core.multiarray" in data
    np.testing.assert_array_equal(pickle_io.load(tmp_path / "old.pkl"), np.arange(3.0))


def test_inspect_and_cli_on_a_plain_pickle(tmp_path, capsys):
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps({"w": np.ones((2, 3), np.float32), "n": 1}, protocol=4))
    summary = pickle_io.inspect(path)
    assert summary.format == "pickle"
    assert [(t.name, t.shape, t.nbytes) for t in summary.tensors] == [("w", (2, 3), 24)]
    assert hgf(["inspect", "--scan", str(path)]) == SAFE
    assert "no unsafe content" in capsys.readouterr().out


class Matrix(np.ndarray):
    pass


@pytest.mark.parametrize("value, error", [
    (np.array([1, "x"], dtype=object), pickle_io.UnsafePickleError),  # object arrays
    (np.array([1, 2]).view(Matrix), pickle_io.UnsafePickleError),  # subclasses
    (np.ma.masked_array([1, 2]), pickle_io.UnsafePickleError),
    (np.zeros(2, dtype=[("a", "f4")]), pickle_io.CheckpointError),  # structured dtypes
    (collections.Counter("ab"), pickle_io.UnsafePickleError),
])
def test_outside_the_numpy_allowlist_is_refused(tmp_path, value, error):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(value, protocol=2))
    with pytest.raises(error):
        pickle_io.load(path)
    assert verdict(scan(path)) in (UNSAFE, UNREADABLE)


def test_not_a_checkpoint_scans_as_unreadable(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("just some text\n")
    (tmp_path / "broken.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=2)[:-3] + b".")
    for name in ("notes.txt", "broken.pkl"):
        findings = scan(tmp_path / name)
        assert findings and verdict(findings) == UNREADABLE, findings
        assert hgf(["inspect", "--scan", str(tmp_path / name)]) == UNREADABLE
    assert "UNSAFE" not in capsys.readouterr().out
