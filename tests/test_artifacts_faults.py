"""The artifact store under faults and hostile input: nothing outside the store is read through a
link, written or deleted; a damaged manifest is detected, never written over; every refusal is a
BridgeError with a one-line CLI message.

Each corpus below is a list of cases run by one test; docs/artifacts.md reports their counts.
"""

import errno
import hashlib
import os
import shutil
import tomllib

import pytest

import bridge.artifacts.manifest as manifest_module
import bridge.artifacts.store as store_module
from bridge.artifacts import (
    ArtifactStore,
    InvalidNameError,
    ManifestDamagedError,
    ManifestError,
    StoreIOError,
    StoreLayoutError,
)
from bridge.cli import main
from bridge.errors import BridgeError

SHA1_NAME = "ab" * 20
SHA256_NAME = "cd" * 32


@pytest.fixture
def store(fresh_caches):
    return ArtifactStore()


@pytest.fixture
def outside(tmp_path):
    """A directory outside the store, filled with things a careless store would delete: entries
    named like artifacts, blobs and a dead process's staging."""
    directory = tmp_path / "outside"
    (directory / SHA1_NAME).mkdir(parents=True)
    (directory / SHA1_NAME / "file.txt").write_bytes(b"precious tree")
    (directory / SHA256_NAME).write_bytes(b"precious blob")
    (directory / "999999999-dead").mkdir()
    (directory / "999999999-dead" / "x").write_bytes(b"precious staging")
    (directory / "victim.toml").write_bytes(b"# not the store's\n")
    return directory


def state(directory):
    """Everything under `directory` (links not followed): {relative path: (kind, bytes or target)}."""
    found = {}
    for folder, subfolders, files in os.walk(directory):
        for name in subfolders + files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, directory)
            if os.path.islink(path):
                found[relative] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[relative] = ("dir", None)
            else:
                with open(path, "rb") as file:
                    found[relative] = ("file", file.read())
    return found


def source_file(tmp_path, name, data):
    path = tmp_path / "sources" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def hgf(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, *argv):
    code, _, err = hgf(capsys, *argv)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- symlinks: the store never follows one out of its root ------------------------------------

OPERATIONS = {
    "gc": lambda store, source: store.gc(),
    "gc --dry-run": lambda store, source: store.gc(dry_run=True),
    "register": lambda store, source: store.register_file(source, "new/name"),
    "remove": lambda store, source: store.remove("org/a.bin"),
    "verify": lambda store, source: store.verify(),
    "names": lambda store, source: store.names(),
    "resolve": lambda store, source: store.resolve("org/a.bin"),
}
INTERNAL = {
    "artifacts": ("artifacts_dir", True),
    "blobs": ("blobs_dir", True),
    ".staging": ("staging_dir", True),
    "Artifacts.toml": (None, False),
    "Artifacts.toml.lock": (None, False),
    "Artifacts.toml.previous": (None, False),
}
SYMLINK_CASES = [(internal, operation) for internal in INTERNAL for operation in OPERATIONS]


@pytest.mark.parametrize("internal, operation", SYMLINK_CASES)
def test_symlinked_internal_path_is_an_error_naming_it(store, outside, tmp_path, internal, operation):
    source = source_file(tmp_path, "a.bin", b"aaaa")
    store.register_file(source, "org/a.bin")
    store.register_file(source_file(tmp_path, "b.bin", b"bbbb"), "org/b.bin")
    link = store.root / internal
    if INTERNAL[internal][1]:  # a directory: its contents move outside, a link takes its place
        for child in link.iterdir():
            os.chmod(child, 0o755) if child.is_dir() else None
        shutil.rmtree(link)
        os.symlink(outside, link)
    else:
        if link.exists():
            link.unlink()
        os.symlink(outside / "victim.toml", link)
    before = state(outside)
    with pytest.raises(StoreLayoutError, match=f"{link} is a symlink"):
        OPERATIONS[operation](store, source)
    assert state(outside) == before


def bound_artifact_linked_outside(store, outside, tmp_path):
    """Bind a name, then replace its artifact directory by a link to an identical directory outside."""
    data = b"contents"
    tree = store.register_file(source_file(tmp_path, "f.txt", data), "org/f.txt")
    directory = store.root / "artifacts" / tree
    copy = outside / "copy"
    copy.mkdir()
    (copy / "f.txt").write_bytes(data)
    os.chmod(directory, 0o755)
    shutil.rmtree(directory)
    os.symlink(copy, directory)
    return directory


def test_artifact_directory_linked_outside_fails_verify_and_resolve(store, outside, tmp_path):
    directory = bound_artifact_linked_outside(store, outside, tmp_path)
    before = state(outside)
    [problem] = store.verify()
    assert problem.name == "org/f.txt" and "symlink" in problem.reason and problem.path == directory
    with pytest.raises(StoreLayoutError, match="is a symlink"):
        store.resolve("org/f.txt")
    assert store.gc() == []  # bound: kept; and nothing outside is touched
    # Registering the same file again repairs it: the link is set aside (not followed), a real copy published.
    store.register_file(source_file(tmp_path, "f.txt", b"contents"), "org/f.txt")
    assert store.verify() == [] and not directory.is_symlink()
    assert state(outside) == before


def test_artifact_file_linked_outside_fails_verify_and_is_repaired(store, outside, tmp_path):
    tree = store.register_file(source_file(tmp_path, "g.txt", b"precious tree"), "org/g.txt")
    directory = store.root / "artifacts" / tree
    os.chmod(directory, 0o755)
    (directory / "g.txt").unlink()
    os.symlink(outside / SHA1_NAME / "file.txt", directory / "g.txt")
    before = state(outside)
    [problem] = store.verify()
    assert "symlink" in problem.reason
    with pytest.raises(StoreLayoutError):
        store.resolve("org/g.txt")
    store.register_file(source_file(tmp_path, "g.txt", b"precious tree"), "org/g.txt")
    assert store.verify() == []
    assert state(outside) == before


def test_unbound_links_in_the_store_are_unlinked_not_followed(store, outside, tmp_path):
    store.register_file(source_file(tmp_path, "a.bin", b"a"), "org/a.bin")
    os.symlink(outside / SHA1_NAME, store.root / "artifacts" / ("ef" * 20))
    os.symlink(outside / SHA256_NAME, store.root / "blobs" / ("01" * 32))
    os.symlink(outside / "999999999-dead", store.root / ".staging" / "999999999-dead")
    (store.root / "artifacts" / "README").write_text("not ours")  # not named by a hash: left alone
    before = state(outside)
    removed = store.gc()
    assert len(removed) == 3 and all(not os.path.lexists(path) for path in removed)
    assert (store.root / "artifacts" / "README").exists()
    assert state(outside) == before


# --- hashes from the manifest never become paths unchecked ------------------------------------

ENTRY = '["org/x"]\ngit-tree-sha1 = "{tree}"\nfile = "x.bin"\n'
HOSTILE_MANIFESTS = {
    "tree hash ../../../../etc": ENTRY.format(tree="../../../../etc"),
    "tree hash absolute": ENTRY.format(tree="/etc"),
    "tree hash upper-case": ENTRY.format(tree="AB" * 20),
    "tree hash 39 digits": ENTRY.format(tree="a" * 39),
    "tree hash an integer": '["org/x"]\ngit-tree-sha1 = 5\n',
    "tree hash missing": '["org/x"]\nfile = "x.bin"\n',
    "sha256 a path": ENTRY.format(tree=SHA1_NAME) + 'sha256 = "../../blobs/x"\n',
    "file ..": '["org/x"]\ngit-tree-sha1 = "%s"\nfile = ".."\n' % SHA1_NAME,
    "file .": '["org/x"]\ngit-tree-sha1 = "%s"\nfile = "."\n' % SHA1_NAME,
    "file empty": '["org/x"]\ngit-tree-sha1 = "%s"\nfile = ""\n' % SHA1_NAME,
    "file a directory": '["org/x"]\ngit-tree-sha1 = "%s"\nfile = "a/"\n' % SHA1_NAME,
    "file = 5": '["org/x"]\ngit-tree-sha1 = "%s"\nfile = 5\n' % SHA1_NAME,
    "file with NUL": '["org/x"]\ngit-tree-sha1 = "%s"\nfile = "a\\u0000b"\n' % SHA1_NAME,
    "size negative": ENTRY.format(tree=SHA1_NAME) + "size = -1\n",
    "size text": ENTRY.format(tree=SHA1_NAME) + 'size = "big"\n',
    "entry not a table": 'x = 5\n',
    "blank name": '["  "]\ngit-tree-sha1 = "%s"\n' % SHA1_NAME,
    "not TOML": "[[[ this is not toml\n",
    "binary": bytes(range(256)) * 4,
    "UTF-16": ENTRY.format(tree=SHA1_NAME).encode("utf-16"),
    "Latin-1": ('["café"]\ngit-tree-sha1 = "%s"\n' % SHA1_NAME).encode("latin-1"),
    "deep arrays": "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep inline tables": "x = " + "{a = " * 50_000 + "1" + "}" * 50_000 + "\n",
}


@pytest.mark.parametrize("case", HOSTILE_MANIFESTS)
def test_hostile_manifest_content_is_a_manifest_error(store, outside, capsys, case):
    content = HOSTILE_MANIFESTS[case]
    store.root.mkdir(parents=True)
    (store.root / "Artifacts.toml").write_bytes(content if isinstance(content, bytes) else content.encode())
    before = state(outside)
    for operation in (store.names, store.verify, store.gc, lambda: store.resolve("org/x")):
        with pytest.raises(ManifestError):
            operation()
    assert one_line_error(capsys, "artifacts", "list").startswith("hgf artifacts: error: ")
    assert state(outside) == before


def test_hand_written_manifest_without_header_is_read(store, tmp_path):
    """Julia users write Artifacts.toml by hand: a file without our header is read unchecked."""
    tree = store.register_file(source_file(tmp_path, "x.bin", b"x"), "org/x")
    (store.root / "Artifacts.toml").write_text(ENTRY.format(tree=tree))
    (store.root / "Artifacts.toml.previous").unlink()
    assert store.names() == ["org/x"] and store.resolve("org/x").read_bytes() == b"x"
    store.register_file(source_file(tmp_path, "y.bin", b"y"), "org/y")  # written back with header and trailer
    assert store.names() == ["org/x", "org/y"]
    assert (store.root / "Artifacts.toml").read_bytes().startswith(manifest_module.HEADER)


# --- truncation and other damage: detected, never written over --------------------------------


def populated(store, tmp_path, count=4):
    for index in range(count):
        store.register_file(source_file(tmp_path, f"f{index}.bin", b"%d" % index * 10), f"org/model/f{index}.bin")
    return (store.root / "Artifacts.toml").read_bytes()


def test_every_truncation_of_the_manifest_is_detected_and_nothing_is_lost(store, tmp_path):
    intact = populated(store, tmp_path)
    manifest = store.root / "Artifacts.toml"
    artifacts_before = state(store.root / "artifacts")
    for cut in range(len(intact)):
        manifest.write_bytes(intact[:cut])
        for operation in (store.names, store.gc, lambda: store.remove("org/model/f0.bin")):
            with pytest.raises(ManifestDamagedError, match="damaged.*nothing was written or deleted"):
                operation()
        if cut % 97 == 0:
            with pytest.raises(ManifestDamagedError):
                store.register_file(source_file(tmp_path, "new.bin", b"new"), "org/new")
        assert manifest.read_bytes() == intact[:cut]  # never written over
    assert state(store.root / "artifacts") == artifacts_before  # gc deleted nothing
    # The way back the message gives: the previous table, then register what it lacks.
    shutil.copyfile(store.root / "Artifacts.toml.previous", manifest)
    assert store.names() == [f"org/model/f{i}.bin" for i in range(3)]
    store.register_file(source_file(tmp_path, "f3.bin", b"3" * 10), "org/model/f3.bin")
    assert store.verify() == [] and len(store.names()) == 4


@pytest.mark.parametrize("position", [0, 10, 120, 200, -60, -2])
def test_changed_bytes_in_the_manifest_are_detected(store, tmp_path, position):
    intact = bytearray(populated(store, tmp_path))
    intact[position] ^= 0x01
    (store.root / "Artifacts.toml").write_bytes(bytes(intact))
    with pytest.raises(ManifestDamagedError):
        store.names()


def test_lost_or_emptied_manifest_of_a_store_with_artifacts_is_damage(store, tmp_path, capsys):
    populated(store, tmp_path, count=1)
    manifest = store.root / "Artifacts.toml"
    for damage in (manifest.unlink, lambda: manifest.write_bytes(b"")):
        damage()
        with pytest.raises(ManifestDamagedError, match="Artifacts.toml.previous"):
            store.gc()
        one_line_error(capsys, "artifacts", "gc")
    assert len(os.listdir(store.root / "artifacts")) == 1


def test_manifest_is_readable_as_plain_toml(store, tmp_path):
    """What Julia's TOML parser sees: header and trailer are comments."""
    populated(store, tmp_path, count=2)
    text = (store.root / "Artifacts.toml").read_text()
    assert text.splitlines()[0].startswith("#") and text.splitlines()[-1].startswith("# hgf-bridge integrity: entries=2 ")
    assert set(tomllib.loads(text)) == {"org/model/f0.bin", "org/model/f1.bin"}


# --- re-registration repairs ----------------------------------------------------------------


def corrupt_in_place(path):
    os.chmod(path, 0o644)
    path.write_bytes(b"XXXX" + path.read_bytes()[4:])  # same inode: the blob is corrupt too


def add_stray_file(path):
    os.chmod(path.parent, 0o755)
    (path.parent / "stray").write_bytes(b"?")


def overwrite_blob(path):
    blob = ArtifactStore().root / "blobs" / hashlib.sha256(DATA).hexdigest()
    os.chmod(blob, 0o644)
    blob.write_bytes(b"not the bytes")  # also the artifact's file: one inode


DATA = os.urandom(5000)


@pytest.mark.parametrize("damage", [corrupt_in_place, add_stray_file, overwrite_blob])
def test_registering_again_repairs_a_damaged_artifact(store, tmp_path, damage):
    source = source_file(tmp_path, "w.bin", DATA)
    store.register_file(source, "org/w.bin")
    damage(store.resolve("org/w.bin"))
    assert store.verify() != []
    store.register_file(source, "org/w.bin")
    assert store.verify() == []
    assert store.resolve("org/w.bin").read_bytes() == DATA
    assert (store.root / "blobs" / hashlib.sha256(DATA).hexdigest()).read_bytes() == DATA


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", " ", "\t\n", "\ud800", "org/\udcff.bin"])
def test_bad_names_are_refused(store, tmp_path, capsys, name):
    source = source_file(tmp_path, "c.bin", b"c")
    with pytest.raises(InvalidNameError):
        store.register_file(source, name)
    assert store.names() == []
    err = one_line_error(capsys, "artifacts", "register", str(source), name)
    assert "artifact name" in err
    assert not (store.root / "Artifacts.toml").exists() or store.names() == []


@pytest.mark.parametrize("file", ["..", ".", "", 5, "dir/", "a\x00b"])
def test_bad_file_names_are_refused(store, tmp_path, file):
    with pytest.raises(InvalidNameError, match="file"):
        store.register_file(source_file(tmp_path, "c.bin", b"c"), "org/c", file=file)
    assert store.names() == []


def test_unwritable_metadata_is_refused(store, tmp_path):
    with pytest.raises(ManifestError, match="cannot be written"):
        store.register_file(source_file(tmp_path, "c.bin", b"c"), "org/c", license="\ud800")
    with pytest.raises(ManifestError, match="cannot be written"):
        store.register_file(source_file(tmp_path, "c.bin", b"c"), "org/c", tags={1, 2})
    assert store.names() == []


def test_default_revision_spelled_out_is_the_same_name(store, tmp_path):
    store.register_file(source_file(tmp_path, "config.json", b"{}"), "org/m/config.json")
    assert store.resolve("org/m@main/config.json") == store.resolve("org/m/config.json")
    store.register_file(source_file(tmp_path, "vocab.txt", b"v"), "org/m@main/vocab.txt")
    assert store.names() == ["org/m/config.json", "org/m/vocab.txt"]
    store.remove("org/m@main/vocab.txt")
    assert store.names() == ["org/m/config.json"]


# --- the operating system says no -----------------------------------------------------------


def os_error(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), "/the/store/path")

    return fail


FAULTS = {
    "read-only store (staging)": ("tempfile", "mkdtemp", errno.EROFS, "not writable"),
    "permission denied (blob link)": ("os", "link", errno.EACCES, "not writable"),
    "disk full while copying": ("hash_file", None, errno.ENOSPC, "disk is full"),
    "disk full while writing Artifacts.toml": ("fsync", None, errno.ENOSPC, "disk is full"),
    "quota exceeded": ("hash_file", None, errno.EDQUOT, "disk is full"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_refusals_of_the_os_are_store_io_errors(store, tmp_path, monkeypatch, capsys, fault):
    store.register_file(source_file(tmp_path, "old.bin", b"old"), "org/old")
    manifest_before = (store.root / "Artifacts.toml").read_bytes()
    where, attribute, code, message = FAULTS[fault]
    if where == "tempfile":
        monkeypatch.setattr(store_module.tempfile, "mkdtemp", os_error(code))
    elif where == "os":
        monkeypatch.setattr(store_module.os, "link", os_error(code))
    elif where == "hash_file":
        monkeypatch.setattr(store_module, "hash_file", os_error(code))
    else:
        monkeypatch.setattr(manifest_module.os, "fsync", os_error(code))
    source = source_file(tmp_path, "new.bin", b"new bytes")
    with pytest.raises(StoreIOError, match=f"cannot register 'org/new'.*{message}"):
        store.register_file(source, "org/new")
    err = one_line_error(capsys, "artifacts", "register", str(source), "org/new")
    assert message in err
    monkeypatch.undo()
    assert (store.root / "Artifacts.toml").read_bytes() == manifest_before
    assert store.names() == ["org/old"] and store.verify() == []
    assert os.listdir(store.root / ".staging") == []


def test_every_refusal_is_a_bridge_error():
    for error in (InvalidNameError, ManifestError, ManifestDamagedError, StoreIOError, StoreLayoutError):
        assert issubclass(error, BridgeError)


# --- the command line says what happened --------------------------------------------------------


def test_cli_says_what_happened_and_escapes_control_characters(store, tmp_path, capsys):
    code, out, _ = hgf(capsys, "artifacts", "list")
    assert code == 0 and out.strip() == f"no artifacts in {store.root} (register one with `hgf get` or `hgf artifacts register`)"
    source = source_file(tmp_path, "c.bin", b"c")
    evil = "evil\x1b[31m\nname\x07"
    assert hgf(capsys, "artifacts", "register", str(source), evil)[0] == 0
    code, out, _ = hgf(capsys, "artifacts", "list")
    assert code == 0 and out.count("\n") == 1 and out.startswith("evil\\x1b[31m\\nname\\x07\t")
    code, out, _ = hgf(capsys, "artifacts", "remove", evil)
    assert code == 0 and out == f"removed evil\\x1b[31m\\nname\\x07 from {store.manifest.path}; its bytes go at the next `hgf artifacts gc`\n"
    err = one_line_error(capsys, "artifacts", "remove", evil)
    assert "\\x1b" in err and "\x1b" not in err
