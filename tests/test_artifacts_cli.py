"""`hgf get` and `hgf artifacts list|verify|gc|register|remove`."""

import json
import os
import shutil
import subprocess

import pytest

from bridge.artifacts import ArtifactStore
from bridge.cli import main

CONFIG = json.dumps({"model_type": "bert", "vocab_size": 99}).encode()


def hgf(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_get_files_then_list_offline(hub_server, capsys, monkeypatch):
    hub_server.add_file("org/m", "config.json", CONFIG)
    hub_server.add_file("org/m", "vocab.txt", b"[PAD]\n", revision="v1")
    code, out, _ = hgf(capsys, "get", "org/m", "config.json")
    assert code == 0 and out.strip() == str(ArtifactStore().resolve("org/m/config.json"))
    assert hgf(capsys, "get", "org/m@v1", "vocab.txt")[0] == 0

    hub_server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, _ = hgf(capsys, "get", "org/m:config")
    assert code == 0 and out.startswith("BertConfig with 2 entries: vocab_size=99")
    code, out, _ = hgf(capsys, "artifacts", "list")
    lines = [line.split("\t") for line in out.splitlines()]
    assert [line[0] for line in lines] == ["org/m/config.json", "org/m@v1/vocab.txt"]
    assert lines[0][1] == ArtifactStore().tree_hash("org/m/config.json") and lines[0][2] == str(len(CONFIG))


def test_errors_are_one_line_with_exit_1(hub_server, capsys, monkeypatch):
    code, out, err = hgf(capsys, "get", "org/absent:config")
    assert code == 1 and err.startswith("hgf get: error: repository 'org/absent' not found") and "Traceback" not in err
    code, _, err = hgf(capsys, "get", "org/m:nonsense")
    assert code == 1 and "unknown item 'nonsense'" in err
    code, _, err = hgf(capsys, "get", "org/m:config", "config.json")
    assert code == 1 and "without an item" in err
    code, _, err = hgf(capsys, "artifacts", "remove", "never/registered")
    assert code == 1 and err.strip() == f"hgf artifacts: error: no artifact named 'never/registered' in {ArtifactStore().manifest.path}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = hgf(capsys, "get", "org/m", "config.json")
    assert code == 1 and "`hgf get org/m config.json`" in err


def test_register_verify_remove_gc(fresh_caches, tmp_path, capsys):
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(4096))
    code, out, _ = hgf(capsys, "artifacts", "register", str(source), "local/weights.bin")
    tree = out.strip()
    assert code == 0 and tree == ArtifactStore().tree_hash("local/weights.bin")

    code, out, _ = hgf(capsys, "artifacts", "verify")
    assert code == 0 and out.startswith("all 1 artifacts intact")
    path = ArtifactStore().resolve("local/weights.bin")
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    code, out, _ = hgf(capsys, "artifacts", "verify")
    assert code == 1 and out.startswith("local/weights.bin: corrupt")

    assert hgf(capsys, "artifacts", "remove", "local/weights.bin")[0] == 0
    code, out, _ = hgf(capsys, "artifacts", "gc", "--dry-run")
    assert code == 0 and f"would remove {ArtifactStore().root / 'artifacts' / tree}" in out
    assert (ArtifactStore().root / "artifacts" / tree).exists()
    code, out, _ = hgf(capsys, "artifacts", "gc")
    assert f"removed {ArtifactStore().root / 'artifacts' / tree}" in out
    assert not (ArtifactStore().root / "artifacts" / tree).exists()
    assert hgf(capsys, "artifacts", "gc")[1].strip() == "nothing to remove"


@pytest.mark.skipif(shutil.which("hgf") is None and not os.path.exists(".venv/bin/hgf"), reason="hgf script not installed")
def test_console_script_prints_no_traceback(fresh_caches):
    script = shutil.which("hgf") or ".venv/bin/hgf"
    result = subprocess.run([script, "get", "./does/not/exist:config"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == "hgf get: error: hgf spec './does/not/exist:config': local directory './does/not/exist' does not exist"
