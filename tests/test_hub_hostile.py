"""A lying Hub server (tests/hubserver.py's hostile mode) against the real huggingface_hub client:
every lie is refused with a BridgeError before anything is written outside the Hub cache and the
store, nothing outside them is deleted, and no name is registered. docs/artifacts.md reports the
corpus as counts."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from bridge.artifacts import ArtifactStore, DownloadError, HashMismatchError, HostileServerError
from bridge.errors import BridgeError
from bridge.hub import fetch_file

REPO = "org/victim-model"
CONFIG = json.dumps({"model_type": "bert", "hidden_size": 32}).encode()
WEIGHTS = os.urandom(200_000)


def git_sha1(data):
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@pytest.fixture
def hub(hub_server):
    hub_server.add_file(REPO, "config.json", CONFIG)
    hub_server.add_file(REPO, "model.safetensors", WEIGHTS)  # LFS: X-Linked-Etag on a redirect
    return hub_server


@pytest.fixture
def victim(tmp_path):
    """A file outside every cache, which a path-like ETag may aim at."""
    path = tmp_path / "victim" / "precious.txt"
    path.parent.mkdir()
    path.write_bytes(b"do not touch")
    return path


def blobs_dir():
    return Path(os.environ["HF_HUB_CACHE"]) / ("models--" + REPO.replace("/", "--")) / "blobs"


def outside_state(tmp_path):
    """Every file under the test's directory except the Hub cache, the store and the served repos."""
    inside = {Path(os.environ["HF_HOME"]), ArtifactStore().root, tmp_path / "hub-repos"}
    found = {}
    for folder, subfolders, files in os.walk(tmp_path):
        subfolders[:] = [name for name in subfolders if Path(folder, name) not in inside]
        for name in files:
            path = Path(folder, name)
            found[str(path)] = path.read_bytes() if not path.is_symlink() else os.readlink(path)
    return found


def relative_to_blobs(target):
    return os.path.relpath(target, blobs_dir())


# (file, lie) pairs; a lie is a function of the victim path giving set_hostile's keywords.
LIES = {
    "ETag ../../<sha1>": lambda victim: {"etag": f'"../../{git_sha1(CONFIG)}"'},
    "ETag ../../../../<sha1> deeper": lambda victim: {"etag": f'"../../../../{git_sha1(CONFIG)}"'},
    "ETag naming an existing file": lambda victim: {"etag": f'"{relative_to_blobs(victim)}"'},
    "ETag an absolute path": lambda victim: {"etag": f'"{victim}"'},
    "ETag upper-case hex": lambda victim: {"etag": f'"{git_sha1(CONFIG).upper()}"'},
    "ETag empty": lambda victim: {"etag": '""'},
    "ETag with NUL": lambda victim: {"etag": '"ab\\x00cd"'},
    "commit ../../x": lambda victim: {"commit": "../../x"},
    "commit naming an existing file": lambda victim: {"commit": relative_to_blobs(victim)},
    "commit not hex": lambda victim: {"commit": "not-a-commit-hash-not-a-commit-hash-0000"},
    "commit upper-case": lambda victim: {"commit": "A" * 40},
    "endless chunked body": lambda victim: {"body": "endless"},
    "body larger than declared": lambda victim: {"body": "oversize"},
    "no size declared, chunked body": lambda victim: {"body": "unsized"},
}
CASES = [(filename, lie) for filename in ("config.json", "model.safetensors") for lie in LIES]


@pytest.mark.parametrize("filename, lie", CASES)
def test_lies_are_refused_before_anything_is_written(hub, victim, tmp_path, filename, lie):
    size = len(CONFIG if filename == "config.json" else WEIGHTS)
    hub.set_hostile(REPO, filename, **LIES[lie](victim))
    before = outside_state(tmp_path)
    with pytest.raises(BridgeError) as raised:
        fetch_file(REPO, filename)
    assert isinstance(raised.value, (HostileServerError, DownloadError)), raised.value
    assert "\n" not in str(raised.value)
    assert outside_state(tmp_path) == before  # nothing written, overwritten or deleted outside
    assert victim.read_bytes() == b"do not touch"
    assert ArtifactStore().names() == []
    cached = [path for path in blobs_dir().rglob("*") if path.is_file()] if blobs_dir().exists() else []
    assert all(path.stat().st_size <= size for path in cached)  # never more than declared
    assert not [path for path in cached if path.name.endswith(".incomplete")]
    assert hub.body_bytes_sent < 64 * 2**20  # the client hung up; it did not drain an endless body
    hub.hostile.clear()  # the truth again: the same file downloads and registers
    assert fetch_file(REPO, filename).read_bytes() == (CONFIG if filename == "config.json" else WEIGHTS)


def test_hex_etag_of_other_bytes_drops_only_the_blob_it_made(hub, victim, tmp_path):
    """The bytes do not hash to the ETag: the cache's blob of this download goes, nothing else."""
    hub.set_hostile(REPO, "config.json", etag=f'"{"0" * 40}"')
    before = outside_state(tmp_path)
    with pytest.raises(HashMismatchError):
        fetch_file(REPO, "config.json")
    assert outside_state(tmp_path) == before
    assert not (blobs_dir() / ("0" * 40)).exists()


def test_planted_cache_link_pointing_outside_is_refused_and_left_alone(hub, victim, tmp_path, monkeypatch):
    """Offline, a snapshot link in the Hub cache that points out of it is not registered, and the
    file it points to is neither copied nor deleted."""
    commit = hub.commit(REPO)
    repo_dir = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + REPO.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    (repo_dir / "snapshots" / commit).mkdir(parents=True)
    (repo_dir / "snapshots" / commit / "config.json").symlink_to(victim)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="not to a blob of the cache"):
        fetch_file(REPO, "config.json")
    assert victim.read_bytes() == b"do not touch"
    assert (repo_dir / "snapshots" / commit / "config.json").is_symlink()
    assert ArtifactStore().names() == []


def test_guard_is_inactive_outside_our_downloads(hub):
    """Other users of huggingface_hub in the process see the server's answers unchanged."""
    import huggingface_hub

    fetch_file(REPO, "config.json")  # installs the guard
    hub.set_hostile(REPO, "model.safetensors", etag='"not-hex"')
    metadata = huggingface_hub.get_hf_file_metadata(
        huggingface_hub.hf_hub_url(REPO, "model.safetensors", endpoint=hub.endpoint), token=False
    )
    assert metadata.etag == "not-hex"


def test_guard_survives_a_new_http_client(hub, victim, tmp_path):
    """huggingface_hub replaces its client after some errors, and users may set their own factory:
    the guard goes with every client made from then on."""
    from huggingface_hub import close_session, set_client_factory

    from bridge.artifacts.hubclient import _hub_http_client

    made = []

    def users_factory():
        made.append(1)
        return _hub_http_client().Client()

    set_client_factory(users_factory)
    try:
        hub.set_hostile(REPO, "config.json", etag=f'"../../{git_sha1(CONFIG)}"')
        close_session()
        before = outside_state(tmp_path)
        with pytest.raises(HostileServerError):
            fetch_file(REPO, "config.json")
        assert made and outside_state(tmp_path) == before
    finally:
        from huggingface_hub.utils._http import default_client_factory

        set_client_factory(default_client_factory)
