"""The artifact store on local files: layout, hashes (git as oracle), sharing, read-only, verify, gc."""

import hashlib
import os
import stat
import subprocess
import sys
import textwrap
import tomllib

import pytest

from bridge.artifacts import (
    ArtifactMissingError,
    ArtifactStore,
    HashMismatchError,
    NotCachedError,
    SourceFileError,
    find_or_register_hgf_file_hash,
)


def git_tree_hash_of(directory):
    """git's tree hash of a one-level directory, via `git hash-object` + `git mktree`."""
    listing = ""
    for entry in sorted(os.listdir(directory)):
        blob = subprocess.run(
            ["git", "hash-object", os.path.join(directory, entry)], capture_output=True, check=True, text=True
        ).stdout.strip()
        listing += f"100644 blob {blob}\t{entry}\n"
    return subprocess.run(
        ["git", "mktree", "--missing"], input=listing, capture_output=True, check=True, text=True
    ).stdout.strip()


@pytest.fixture
def store(fresh_caches):
    return ArtifactStore()


@pytest.fixture
def make_file(tmp_path):
    def make(name, data):
        path = tmp_path / "sources" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    return make


def read_toml(store):
    with open(store.root / "Artifacts.toml", "rb") as file:
        return tomllib.load(file)


def test_root_follows_environment_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("HGF_BRIDGE_HOME", str(tmp_path / "home"))
    assert ArtifactStore().root == tmp_path / "home"
    monkeypatch.delenv("HGF_BRIDGE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ArtifactStore().root == tmp_path / "xdg" / "hgf-bridge"


def test_artifacts_toml_gets_the_usual_file_mode(store, make_file):
    """Replaced atomically, yet readable by others (Julia may run as another user): umask applies."""
    old = os.umask(0o022)
    try:
        store.register_file(make_file("a.txt", b"a"), "me/a.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((store.root / "Artifacts.toml").stat().st_mode) == 0o644


def test_register_file_lays_out_julia_artifact(store, make_file):
    data = b'{"model_type": "bert"}\n'
    tree = store.register_file(make_file("config.json", data), "org/model/config.json", repo="org/model")
    directory = store.root / "artifacts" / tree
    assert os.listdir(directory) == ["config.json"]
    assert tree == git_tree_hash_of(directory)
    assert store.resolve("org/model/config.json") == directory / "config.json"
    assert store.resolve("org/model/config.json").read_bytes() == data
    entry = read_toml(store)["org/model/config.json"]
    assert entry["git-tree-sha1"] == tree
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["size"] == len(data)
    assert entry["repo"] == "org/model"
    assert store.names() == ["org/model/config.json"]


def test_published_artifacts_are_read_only(store, make_file):
    tree = store.register_file(make_file("a.txt", b"abc"), "a")
    path = store.resolve("a")
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not (store.root / "artifacts" / tree).stat().st_mode & stat.S_IWUSR


def test_source_file_is_copied_so_later_edits_do_not_leak_in(store, make_file):
    source = make_file("a.txt", b"original")
    store.register_file(source, "a")
    source.write_bytes(b"changed")
    assert store.resolve("a").read_bytes() == b"original"
    assert store.verify() == []


def test_identical_bytes_are_stored_once(store, make_file):
    data = os.urandom(10_000)
    store.register_file(make_file("one/model.bin", data), "repo-a/model.bin")
    store.register_file(make_file("two/model.bin", data), "repo-b@v1/model.bin")
    store.register_file(make_file("three/other-name.bin", data), "repo-c/other-name.bin")
    inodes = {store.resolve(name).stat().st_ino for name in store.names()}
    assert len(inodes) == 1
    assert len(os.listdir(store.root / "blobs")) == 1
    # Same file name and bytes: the very same artifact directory.
    assert store.tree_hash("repo-a/model.bin") == store.tree_hash("repo-b@v1/model.bin")


def test_expected_sha256_mismatch_registers_nothing(store, make_file):
    with pytest.raises(HashMismatchError, match="sha256 .* expected 0+; nothing registered"):
        store.register_file(make_file("a.bin", b"abc"), "a", sha256="0" * 64)
    assert store.names() == []
    assert not any((store.root / "artifacts").glob("*"))
    assert not any((store.root / ".staging").glob("*"))


def test_expected_git_etag_is_checked(store, make_file):
    source = make_file("a.txt", b"abc")
    with pytest.raises(HashMismatchError, match="git blob sha1"):
        store.register_file(source, "a", etag="1" * 40)
    good_etag = subprocess.run(["git", "hash-object", str(source)], capture_output=True, text=True).stdout.strip()
    store.register_file(source, "a", etag=good_etag)
    assert store.names() == ["a"]


def test_missing_source_file_is_a_clear_error(store, tmp_path):
    with pytest.raises(SourceFileError, match="nope.bin is not a file"):
        store.register_file(tmp_path / "nope.bin", "x")


def test_unregistered_name_says_how_to_fetch(store):
    with pytest.raises(NotCachedError, match=r"'org/repo@v2/config.json' is not in the artifact store.*"
                       r"hgf get org/repo@v2 config.json"):
        store.resolve("org/repo@v2/config.json")


def test_remove_unbinds_and_gc_deletes_only_unbound(store, make_file):
    shared = os.urandom(1000)
    store.register_file(make_file("x/a.bin", shared), "keep")
    store.register_file(make_file("y/b.bin", shared), "drop-shared-bytes")
    store.register_file(make_file("z/c.bin", b"only mine"), "drop")
    dropped_dir = store.resolve("drop").parent
    store.remove("drop")
    store.remove("drop-shared-bytes")
    with pytest.raises(ArtifactMissingError, match="no artifact named 'drop'"):
        store.remove("drop")

    planned = store.gc(dry_run=True)
    assert dropped_dir in planned
    assert store.root / "blobs" / hashlib.sha256(b"only mine").hexdigest() in planned
    assert store.root / "blobs" / hashlib.sha256(shared).hexdigest() not in planned
    assert dropped_dir.exists()  # dry run deletes nothing

    assert sorted(store.gc()) == sorted(planned)
    assert not dropped_dir.exists()
    assert store.resolve("keep").read_bytes() == shared
    assert store.gc(dry_run=True) == []


def test_verify_reports_corrupt_and_missing(store, make_file):
    store.register_file(make_file("a.bin", b"aaaa"), "a")
    store.register_file(make_file("b.bin", b"bbbb"), "b")
    store.register_file(make_file("c.bin", b"cccc"), "c")
    assert store.verify() == []
    corrupt = store.resolve("a")
    os.chmod(corrupt, 0o644)
    corrupt.write_bytes(b"AAAA")
    gone = store.resolve("b").parent
    os.chmod(gone, 0o755)
    for child in gone.iterdir():
        child.unlink()
    gone.rmdir()
    problems = {problem.name: problem.reason for problem in store.verify()}
    assert problems.keys() == {"a", "b"}
    assert problems["a"].startswith("corrupt")
    assert problems["b"] == "missing"


def test_find_or_register_hgf_file_hash(fresh_caches, make_file):
    source = make_file("config.json", b"{}")
    tree = find_or_register_hgf_file_hash(source, "org/model", "config.json")
    assert ArtifactStore().tree_hash("org/model/config.json") == tree
    # Bound already: answered from Artifacts.toml, the path is not even read.
    assert find_or_register_hgf_file_hash(source.parent / "gone.json", "org/model", "config.json") == tree


def test_register_url_file_scheme_checks_sha256(store, make_file):
    source = make_file("vocab.txt", b"[PAD]\n")
    url = source.as_uri()
    with pytest.raises(HashMismatchError):
        store.register_url(url, "vocab", sha256="f" * 64)
    tree = store.register_url(url, "vocab", sha256=hashlib.sha256(b"[PAD]\n").hexdigest())
    assert store.resolve("vocab").name == "vocab.txt"
    assert read_toml(store)["vocab"]["source"] == url
    assert tree == git_tree_hash_of(store.resolve("vocab").parent)


def test_toml_names_are_quoted_keys_julia_can_read(store, make_file):
    store.register_file(make_file("c.json", b"{}"), "org/model@refs/pr/1/c.json")
    text = (store.root / "Artifacts.toml").read_text()
    assert '["org/model@refs/pr/1/c.json"]' in text
    assert read_toml(store)["org/model@refs/pr/1/c.json"]["git-tree-sha1"] == store.tree_hash(
        "org/model@refs/pr/1/c.json"
    )


CRASHING_CHILD = textwrap.dedent(
    """
    import os, sys
    import bridge.artifacts.store as store_module
    from bridge.artifacts import ArtifactStore

    real_hash_file = store_module.hash_file
    def hash_then_die(*args, **kwargs):
        real_hash_file(*args, **kwargs)
        os._exit(9)  # killed after staging the bytes, before publishing anything
    store_module.hash_file = hash_then_die
    ArtifactStore().register_file(sys.argv[1], "victim")
    """
)


def test_process_killed_midway_leaves_nothing_registered_and_gc_cleans_up(store, make_file):
    source = make_file("big.bin", os.urandom(100_000))
    child = subprocess.run([sys.executable, "-c", CRASHING_CHILD, str(source)], env=os.environ.copy())
    assert child.returncode == 9
    assert store.names() == []
    assert not any((store.root / "artifacts").glob("*"))
    debris = list((store.root / ".staging").iterdir())
    assert len(debris) == 1  # the dead process's staging directory
    assert store.gc() == debris
    assert list((store.root / ".staging").iterdir()) == []
