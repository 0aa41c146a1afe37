"""Hub downloads through the real huggingface_hub client against tests/hubserver.py on 127.0.0.1."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import tomllib
import types
from pathlib import Path

import huggingface_hub
import huggingface_hub.file_download as file_download
import pytest

from bridge.artifacts import (
    ArtifactStore,
    DownloadError,
    EntryNotFoundError,
    HashMismatchError,
    InvalidNameError,
    NotCachedError,
    RepoNotFoundError,
    RevisionNotFoundError,
    get_or_download_hgf_file,
)
from bridge.hub import fetch_file

REPO = "org/tiny-bert"
CONFIG = json.dumps({"model_type": "bert", "vocab_size": 99, "hidden_size": 32}).encode()
WEIGHTS = os.urandom(300_000)


@pytest.fixture
def hub(hub_server):
    hub_server.add_file(REPO, "config.json", CONFIG)
    hub_server.add_file(REPO, "model.safetensors", WEIGHTS)  # LFS: served through a redirect
    return hub_server


def disk_usage(*paths):
    """Bytes allocated under `paths`, each inode counted once (GNU du)."""
    output = subprocess.run(["du", "-s", "-c", "-B1", *map(str, paths)], capture_output=True, text=True, check=True)
    return int(output.stdout.splitlines()[-1].split()[0])


def toml_entry(name):
    with open(ArtifactStore().root / "Artifacts.toml", "rb") as file:
        return tomllib.load(file)[name]


def test_fresh_download_registers_with_hub_metadata(hub):
    path = fetch_file(REPO, "config.json")
    assert path.read_bytes() == CONFIG
    entry = toml_entry(f"{REPO}/config.json")
    assert entry["commit"] == hub.commit(REPO)
    assert entry["etag"] == subprocess.run(
        ["git", "hash-object", "--stdin"], input=CONFIG, capture_output=True, check=True
    ).stdout.decode().strip()
    assert entry["revision"] == "main" and entry["repo"] == REPO and entry["file"] == "config.json"


def test_lfs_file_comes_through_the_redirect_and_shares_the_hub_cache_blob(hub):
    path = fetch_file(REPO, "model.safetensors")
    assert path.read_bytes() == WEIGHTS
    assert any(url.startswith("/lfs/") for _, url in hub.requests)  # the "CDN" was used
    sha256 = hashlib.sha256(WEIGHTS).hexdigest()
    assert toml_entry(f"{REPO}/model.safetensors")["etag"] == sha256
    hub_blob = Path(os.environ["HF_HUB_CACHE"]) / "models--org--tiny-bert" / "blobs" / sha256
    assert path.stat().st_ino == hub_blob.stat().st_ino  # zero bytes copied
    assert hub_blob.stat().st_nlink == 3  # Hub cache blob, our blob store, our artifact
    # du counts each inode once: the store adds only directory and TOML blocks, not the 300 kB.
    extra = disk_usage(os.environ["HF_HUB_CACHE"], ArtifactStore().root) - disk_usage(os.environ["HF_HUB_CACHE"])
    assert extra < 64 * 1024 < len(WEIGHTS)


def test_cached_reuse_makes_no_request(hub):
    first = fetch_file(REPO, "model.safetensors")
    before = hub.count()
    assert fetch_file(REPO, "model.safetensors") == first
    assert get_or_download_hgf_file(REPO, "model.safetensors") == first
    assert hub.count() == before


def test_file_already_in_hub_cache_is_registered_without_copying(hub):
    # Downloaded by plain huggingface_hub (as transformers would), then asked for by us.
    cached = huggingface_hub.hf_hub_download(
        REPO, "model.safetensors", cache_dir=os.environ["HF_HUB_CACHE"], endpoint=hub.endpoint
    )
    path = fetch_file(REPO, "model.safetensors")
    assert path.stat().st_ino == Path(cached).resolve().stat().st_ino


def test_pinned_revisions_branch_tag_and_commit(hub):
    hub.add_file(REPO, "config.json", b'{"model_type": "gpt2"}', revision="dev")
    hub.add_file(REPO, "config.json", b'{"model_type": "roberta"}', revision="v1.0")
    assert fetch_file(REPO, "config.json", revision="dev").read_bytes() == b'{"model_type": "gpt2"}'
    assert fetch_file(REPO, "config.json", revision="v1.0").read_bytes() == b'{"model_type": "roberta"}'
    dev_commit = hub.commit(REPO, "dev")
    assert fetch_file(REPO, "config.json", revision=dev_commit).read_bytes() == b'{"model_type": "gpt2"}'
    assert fetch_file(REPO, "config.json").read_bytes() == CONFIG
    names = ArtifactStore().names()
    assert set(names) == {
        f"{REPO}/config.json", f"{REPO}@dev/config.json", f"{REPO}@v1.0/config.json", f"{REPO}@{dev_commit}/config.json"
    }
    assert toml_entry(f"{REPO}@dev/config.json")["commit"] == dev_commit


def test_nested_file_and_slashed_revision(hub):
    hub.add_file(REPO, "onnx/sub/model.onnx", b"onnx bytes", revision="refs/pr/1")
    path = fetch_file(REPO, "onnx/sub/model.onnx", revision="refs/pr/1")
    assert path.name == "model.onnx" and path.read_bytes() == b"onnx bytes"
    entry = toml_entry(f"{REPO}@refs/pr/1/onnx/sub/model.onnx")
    assert entry["commit"] == hub.commit(REPO, "refs/pr/1")
    assert entry["file"] == "onnx/sub/model.onnx"


def test_missing_file(hub):
    with pytest.raises(EntryNotFoundError, match=f"'{REPO}' has no file 'nope.json' at revision 'main'"):
        fetch_file(REPO, "nope.json")
    assert fetch_file(REPO, "nope.json", missing_ok=True) is None
    assert ArtifactStore().names() == []


def test_missing_repo_and_revision(hub):
    with pytest.raises(RepoNotFoundError, match="repository 'org/absent' not found on http://127.0.0.1"):
        fetch_file("org/absent", "config.json")
    with pytest.raises(RepoNotFoundError):  # missing_ok covers a missing file, not a missing repo
        fetch_file("org/absent", "config.json", missing_ok=True)
    with pytest.raises(RevisionNotFoundError, match="has no revision 'v9'"):
        fetch_file(REPO, "config.json", revision="v9")


def test_token_from_environment_is_sent(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    fetch_file(REPO, "config.json")
    assert hub.authorizations and set(hub.authorizations) == {"Bearer hf_test_token"}


def test_token_file_in_hf_home_is_sent(hub):
    token_file = Path(os.environ["HF_HOME"]) / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("hf_from_file\n")
    fetch_file(REPO, "config.json")
    assert hub.authorizations and set(hub.authorizations) == {"Bearer hf_from_file"}


def test_no_token_no_authorization_header(hub):
    fetch_file(REPO, "model.safetensors")
    assert hub.authorizations == []


def test_private_and_gated_repos_need_a_token(hub, monkeypatch):
    hub.add_file("org/private", "config.json", CONFIG)
    hub.add_file("org/gated", "config.json", CONFIG)
    hub.protect("org/private", "hf_right")
    hub.protect("org/gated", "hf_right", gated=True)
    with pytest.raises(RepoNotFoundError, match=r"'org/private' not found .* \(if it is private, set HF_TOKEN\)"):
        fetch_file("org/private", "config.json")
    with pytest.raises(RepoNotFoundError, match="'org/gated' .* is gated: accept its terms"):
        fetch_file("org/gated", "config.json")
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    assert fetch_file("org/private", "config.json").read_bytes() == CONFIG
    assert fetch_file("org/gated", "config.json").read_bytes() == CONFIG


def test_truncated_body_once_is_resumed_and_verified(hub):
    hub.set_fault(REPO, "model.safetensors", "truncate", times=1)
    assert fetch_file(REPO, "model.safetensors").read_bytes() == WEIGHTS


def test_truncated_body_always_fails_and_registers_nothing(hub, monkeypatch):
    # The client retries a broken body 5 times, 1 s apart; only its pause is skipped here.
    monkeypatch.setattr(file_download, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    hub.set_fault(REPO, "config.json", "truncate")
    with pytest.raises(DownloadError, match="could not download 'config.json' of org/tiny-bert@main"):
        fetch_file(REPO, "config.json")
    assert ArtifactStore().names() == []


@pytest.mark.parametrize("filename", ["config.json", "model.safetensors"])
def test_wrong_etag_is_caught_and_nothing_registered(hub, filename):
    hub.set_fault(REPO, filename, "wrong_etag", times=1)
    kind = "sha256" if filename.endswith(".safetensors") else "git blob sha1"
    with pytest.raises(HashMismatchError, match=f"{kind} of the bytes is .* nothing registered"):
        fetch_file(REPO, filename)
    assert ArtifactStore().names() == []
    # The bad bytes were dropped from the Hub cache: the next try downloads afresh and succeeds.
    assert fetch_file(REPO, filename).stat().st_size == len(CONFIG if filename == "config.json" else WEIGHTS)


def test_server_down(hub):
    registered = fetch_file(REPO, "config.json")
    hub.stop()
    assert fetch_file(REPO, "config.json") == registered
    with pytest.raises(DownloadError, match="could not reach the Hub at http://127.0.0.1:.* not cached"):
        fetch_file(REPO, "model.safetensors")


def test_offline_registered_names_resolve_others_say_how_to_fetch(hub, monkeypatch):
    registered = fetch_file(REPO, "config.json")
    pinned = fetch_file(REPO, "config.json", revision=hub.commit(REPO))
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = hub.count()
    assert fetch_file(REPO, "config.json") == registered
    assert fetch_file(REPO, "config.json", revision=hub.commit(REPO)) == pinned
    with pytest.raises(NotCachedError, match=f"not cached and HF_HUB_OFFLINE is set.*`hgf get {REPO} model.safetensors`"):
        fetch_file(REPO, "model.safetensors")
    assert fetch_file(REPO, "model.safetensors", missing_ok=True) is None
    assert hub.count() == requests


def test_offline_file_in_hub_cache_is_registered_from_it(hub, monkeypatch):
    huggingface_hub.hf_hub_download(REPO, "config.json", cache_dir=os.environ["HF_HUB_CACHE"], endpoint=hub.endpoint)
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_file(REPO, "config.json").read_bytes() == CONFIG
    assert ArtifactStore().names() == [f"{REPO}/config.json"]


def test_local_directory_source(tmp_path):
    (tmp_path / "config.json").write_bytes(CONFIG)
    assert fetch_file(tmp_path, "config.json") == tmp_path / "config.json"
    assert fetch_file(str(tmp_path), "absent.bin", missing_ok=True) is None
    with pytest.raises(EntryNotFoundError, match="has no file 'absent.bin'"):
        fetch_file(tmp_path, "absent.bin")


KILLED_DOWNLOAD = textwrap.dedent(
    """
    import sys
    from bridge.hub import fetch_file
    fetch_file(sys.argv[1], "model.safetensors")
    """
)


def test_download_killed_midway_registers_nothing(hub):
    hub.set_fault(REPO, "model.safetensors", "stall")
    child = subprocess.Popen([sys.executable, "-c", KILLED_DOWNLOAD, REPO], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not any(url.startswith("/lfs/") for _, url in list(hub.requests)):
            assert time.monotonic() < deadline and child.poll() is None, "the download never started"
            time.sleep(0.05)
        time.sleep(0.2)  # the body is half sent and hanging
    finally:
        child.kill()
        child.wait()
    store = ArtifactStore()
    assert store.names() == []
    assert not (store.root / "artifacts").exists() or not any((store.root / "artifacts").iterdir())
    hub.faults.clear()
    assert fetch_file(REPO, "model.safetensors").read_bytes() == WEIGHTS


def test_server_answers_the_clients_listing_and_snapshot_calls(hub):
    api = huggingface_hub.HfApi(endpoint=hub.endpoint, token=False)
    info = api.model_info(REPO)
    assert info.sha == hub.commit(REPO)
    assert sorted(sibling.rfilename for sibling in info.siblings) == ["config.json", "model.safetensors"]
    assert sorted(api.list_repo_files(REPO)) == ["config.json", "model.safetensors"]
    snapshot = huggingface_hub.snapshot_download(
        REPO, cache_dir=os.environ["HF_HUB_CACHE"], endpoint=hub.endpoint, token=False
    )
    assert (Path(snapshot) / "model.safetensors").read_bytes() == WEIGHTS


@pytest.mark.parametrize("filename", ["../secret.txt", "sub/../../secret.txt", "/etc/passwd", "..", "", "a\\b"])
def test_file_names_that_leave_the_model_are_refused(hub, tmp_path, filename):
    (tmp_path / "secret.txt").write_text("outside")
    model = tmp_path / "model"
    model.mkdir()
    for source in (model, REPO):
        with pytest.raises(InvalidNameError, match="expected a relative path|not a file name"):
            fetch_file(source, filename)
    assert ArtifactStore().names() == []
