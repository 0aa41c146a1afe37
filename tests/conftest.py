"""Test-wide isolation: no test reads or writes the user's caches or reaches the real Hub.

These variables are set at import, before any test imports huggingface_hub (which reads some of
them once, at its own import).
"""

import os
import tempfile

_SANDBOX = tempfile.mkdtemp(prefix="hgf-bridge-tests-")
os.environ["HGF_BRIDGE_HOME"] = os.path.join(_SANDBOX, "bridge-home")
os.environ["HF_HOME"] = os.path.join(_SANDBOX, "hf-home")
os.environ["HF_HUB_CACHE"] = os.path.join(_SANDBOX, "hf-home", "hub")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: a stray real-Hub call fails fast
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)


# --- Fixtures (artifacts helper) ----------------------------------------------------------------

import pytest  # noqa: E402


@pytest.fixture
def fresh_caches(tmp_path, monkeypatch):
    """An empty artifact store and Hub cache for this test alone (HGF_BRIDGE_HOME, HF_HOME, HF_HUB_CACHE)."""
    monkeypatch.setenv("HGF_BRIDGE_HOME", str(tmp_path / "bridge-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


@pytest.fixture
def hub_server(fresh_caches, monkeypatch):
    """A Hub-compatible server on 127.0.0.1 (tests/hubserver.py) that HF_ENDPOINT points to, with
    fresh caches. Fill it with `hub_server.add_file(repo_id, path, data, revision="main", lfs=None)`;
    `hub_server.count("GET")` counts requests; `stop()` / `start()` take it down and up."""
    from hubserver import HubServer

    server = HubServer(fresh_caches / "hub-repos").start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    yield server
    server.stop()
