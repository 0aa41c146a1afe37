"""Our git hashes against git itself: `git hash-object`, `git mktree` and `git write-tree`."""

import hashlib
import os
import shutil
import subprocess

import pytest

from bridge.artifacts.hashes import (
    MODE_EXECUTABLE,
    MODE_FILE,
    git_blob_sha1,
    git_blob_sha1_of_file,
    hash_file,
    single_file_tree_hash,
    tree_hash,
    tree_hash_of_directory,
)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is the oracle and is not installed")


def git(*args, cwd=None, input=None):
    result = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, check=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    return result.stdout.decode().strip()


def git_write_tree(directory):
    """The tree hash git records for `directory`'s contents (an oracle independent of our code)."""
    git("init", "-q", str(directory))
    git("add", "-A", ".", cwd=directory)
    return git("write-tree", cwd=directory)


# Short ids: pytest puts the test id in the environment (PYTEST_CURRENT_TEST), which git inherits,
# and some pytest versions spell a bytes parameter out in full (70 kB: execve's E2BIG).
@pytest.mark.parametrize(
    "data", [b"", b"hello\n", bytes(range(256)) * 1000, os.urandom(70_000)], ids=["empty", "line", "256k", "random"]
)
def test_blob_sha1_matches_git_hash_object(tmp_path, data):
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = git("hash-object", str(path))
    assert git_blob_sha1(data) == expected
    assert git_blob_sha1_of_file(path) == expected


def test_hash_file_gives_sha256_git_sha1_and_size_and_copies(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "source"
    source.write_bytes(data)
    with open(tmp_path / "copy", "wb") as copy:
        hashes = hash_file(source, copy_to=copy)
    assert hashes.sha256 == hashlib.sha256(data).hexdigest()
    assert hashes.git_sha1 == git("hash-object", str(source))
    assert hashes.size == len(data)
    assert (tmp_path / "copy").read_bytes() == data


def test_single_file_tree_matches_git_mktree(tmp_path):
    blob = git_blob_sha1(b"{}\n")
    listing = f"100644 blob {blob}\tconfig.json\n".encode()
    git("init", "-q", str(tmp_path))
    (tmp_path / "config.json").write_bytes(b"{}\n")
    git("hash-object", "-w", "config.json", cwd=tmp_path)
    assert single_file_tree_hash("config.json", blob) == git("mktree", cwd=tmp_path, input=listing)


def test_tree_ordering_and_modes_match_git_mktree(tmp_path):
    # "a.b" < "a/" < "a0" in git's order: a directory sorts as if its name ended in "/".
    git("init", "-q", str(tmp_path))
    blobs = {}
    for name in ("a.b", "a0", "z", "inner"):
        (tmp_path / name).write_bytes(name.encode())
        blobs[name] = git("hash-object", "-w", name, cwd=tmp_path)
    subtree = git("mktree", cwd=tmp_path, input=f"100644 blob {blobs['inner']}\tinner\n".encode())
    listing = (
        f"100644 blob {blobs['a.b']}\ta.b\n040000 tree {subtree}\ta\n"
        f"100755 blob {blobs['a0']}\ta0\n100644 blob {blobs['z']}\tz\n"
    )
    ours = tree_hash(
        [("100644", "z", blobs["z"]), ("40000", "a", subtree), (MODE_EXECUTABLE, "a0", blobs["a0"]),
         (MODE_FILE, "a.b", blobs["a.b"])]
    )
    assert ours == git("mktree", cwd=tmp_path, input=listing.encode())


def test_directory_hash_matches_git_write_tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "empty").mkdir()  # git ignores empty directories, and so must we
    (tree / "weights.bin").write_bytes(os.urandom(5000))
    (tree / "sub" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tree / "sub" / "deeper" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tree / "sub" / "deeper" / "run.sh", 0o755)
    os.symlink("weights.bin", tree / "link")
    ours = tree_hash_of_directory(tree)
    assert ours == git_write_tree(tree)
