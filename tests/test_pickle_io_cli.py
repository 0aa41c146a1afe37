"""`hgf convert` output checks and `hgf inspect --scan` exit codes (one-line errors, exit 1)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import pickle_io
from bridge.cli import main as hgf


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "c.bin"
    torch.save({"w": torch.ones(2, 3)}, path)
    return path


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_file_output_in_a_missing_folder(tmp_path, checkpoint, capsys):
    assert hgf(["convert", str(checkpoint), str(tmp_path / "nonexistent-dir" / "x.safetensors")]) == 1
    assert "does not exist" in error_line(capsys)
    assert not (tmp_path / "nonexistent-dir").exists()


def test_file_output_under_a_regular_file(tmp_path, checkpoint, capsys):
    (tmp_path / "afile").write_text("x")
    assert hgf(["convert", str(checkpoint), str(tmp_path / "afile" / "x.bin")]) == 1
    assert "is not a folder" in error_line(capsys)


def test_directory_output_is_created_and_said(tmp_path, checkpoint, capsys):
    assert hgf(["convert", str(checkpoint), str(tmp_path / "out")]) == 0
    assert f"created directory {tmp_path / 'out'}" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert hgf(["convert", str(checkpoint), str(tmp_path / "out")]) == 0
    assert "created" not in capsys.readouterr().out


def test_unknown_suffix_needs_format(tmp_path, checkpoint, capsys):
    assert hgf(["convert", str(checkpoint), str(tmp_path / "out.npz")]) == 1
    assert "unknown output suffix '.npz'" in error_line(capsys)
    assert not (tmp_path / "out.npz").exists()
    assert hgf(["convert", str(checkpoint), str(tmp_path / "out.npz"), "--format", "zip"]) == 0
    assert torch.load(tmp_path / "out.npz", weights_only=True)["w"].shape == (2, 3)


@pytest.mark.parametrize("name, form", [("out.safetensors", "legacy"), ("out.safetensors", "zip"),
                                        ("out.bin", "safetensors"), ("out.pt", "safetensors")])
def test_format_contradicting_the_suffix_is_refused(tmp_path, checkpoint, capsys, name, form):
    assert hgf(["convert", str(checkpoint), str(tmp_path / name), "--format", form]) == 1
    assert "contradicts" in error_line(capsys)
    assert not (tmp_path / name).exists()


def test_scan_exit_codes(tmp_path, checkpoint, capsys):
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": np.ones(2), "b": [1, "x"]}))
    (tmp_path / "text.txt").write_text("hello, not a checkpoint\n")

    class Payload:
        def __reduce__(self):
            import os
            return (os.system, ("true",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Payload()))
    assert hgf(["inspect", "--scan", str(checkpoint)]) == 0
    assert hgf(["inspect", "--scan", str(tmp_path / "plain.pkl")]) == 0
    assert hgf(["inspect", "--scan", str(tmp_path / "evil.pkl")]) == 1
    assert hgf(["inspect", "--scan", str(tmp_path / "text.txt")]) == 2
    out = capsys.readouterr().out
    assert "UNREADABLE" in out and out.count("UNSAFE") == 1
    help_text = pickle_io.__name__ and __import__("bridge.cli", fromlist=["build_parser"])
    parser = help_text.build_parser()
    inspect_help = parser._subparsers._group_actions[0].choices["inspect"].format_help()
    assert "0 safe, 1 unsafe content found, 2 not a checkpoint" in " ".join(inspect_help.split())
