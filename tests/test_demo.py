"""The main job (`make demo` runs `python -m bridge.demo`) works from a clean directory."""

import json
import os
import shutil
import subprocess
import sys


def test_demo_runs_offline_and_checks_every_step(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HGF_BRIDGE_HOME"}
    result = subprocess.run(
        [sys.executable, "-m", "bridge.demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert result.stdout.count("   ok   ") >= 4
    if shutil.which("julia") is None:
        assert "skipped: no `julia` executable on PATH" in result.stdout
    # The demo keeps its store inside its output folder.
    store = tmp_path / "demo-output" / "hgf-bridge-home" / "Artifacts.toml"
    assert "demo/tiny-gpt2/pytorch_model.bin" in store.read_text()
    # Special-token ids lie inside the vocabulary, so transformers loads the model without a warning.
    config = json.loads((tmp_path / "demo-output" / "tiny-gpt2" / "config.json").read_text())
    assert 0 <= config["bos_token_id"] < config["vocab_size"] and 0 <= config["eos_token_id"] < config["vocab_size"]
