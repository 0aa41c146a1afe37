"""A Hugging Face Hub look-alike on 127.0.0.1, serving model repos from a folder, for tests.

It answers what `huggingface_hub.hf_hub_download` asks (see REFERENCE.md section 3):

- HEAD/GET `/{repo_id}/resolve/{revision}/{path}`: plain files with `ETag` = git blob sha1;
  LFS files (weights) with a 302 to a "CDN" host (`localhost` instead of `127.0.0.1`, so the client
  treats it as another host) carrying `X-Linked-Etag` = sha256 and `X-Linked-Size`; every answer
  has `X-Repo-Commit`; missing things get 404 with `X-Error-Code` RepoNotFound / RevisionNotFound /
  EntryNotFound. GET honours `Range: bytes=N-` (the client resumes broken downloads with it).
- GET `/api/models/{repo_id}[/revision/{revision}]` and `/api/models/{repo_id}/tree/{revision}`.

Repos live in `<folder>/<repo_id>/<revision>/<path>`; a revision (branch or tag) gets a commit hash
derived from its contents, and the commit hash works as a revision too. Faults can be injected per
file: a truncated body, a wrong etag, a body that stalls. A hostile mode (`set_hostile`) lies as an
attacker would: an ETag or commit that is a path (`../../x`), a body that never ends or is larger
than the size declared. Every request is logged in `requests` (and its Authorization header, if any,
in `authorizations`); `body_bytes_sent` counts what hostile bodies sent.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote, unquote, urlsplit

LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt", ".npz")
FAULTS = ("truncate", "wrong_etag", "stall")
HOSTILE_BODIES = ("endless", "oversize", "unsized")
ENDLESS_CAP = 256 * 2**20  # an "endless" body stops here, should a client keep reading


@dataclass
class Hostility:
    """What a hostile server sends for one file instead of the truth (None: the truth)."""

    etag: Optional[str] = None  # the ETag (X-Linked-Etag for an LFS file), sent as is
    commit: Optional[str] = None  # the X-Repo-Commit
    body: Optional[str] = None  # "endless": chunked, never ends; "oversize": twice the declared size;
    # "unsized": HEAD and GET declare no size, the GET body is chunked


@dataclass
class Fault:
    kind: str
    remaining: Optional[int]  # None: every request


@dataclass
class HubServer:
    """The server, its folder of repos, its request log and its fault switches."""

    folder: Path
    lfs_files: set = field(default_factory=set)  # (repo_id, revision, path)
    faults: Dict[Tuple[str, str], Fault] = field(default_factory=dict)  # (repo_id, path) -> fault
    requests: List[Tuple[str, str]] = field(default_factory=list)  # (method, path)
    authorizations: List[str] = field(default_factory=list)  # Authorization headers received
    protected: Dict[str, Tuple[str, bool]] = field(default_factory=dict)  # repo_id -> (token, gated)
    hostile: Dict[Tuple[str, str], Hostility] = field(default_factory=dict)  # (repo_id, path) -> lies
    body_bytes_sent: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    # --- control --------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "HubServer":
        """Listen on 127.0.0.1 (a free port the first time, the same port after a `stop()`)."""
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop answering: connections are refused until `start()`."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def add_file(
        self, repo_id: str, path: str, data: bytes, revision: str = "main", lfs: Optional[bool] = None
    ) -> None:
        """Put `data` at `path` in `repo_id` at `revision` (a branch or tag; created if new).
        `lfs` defaults to True for weight files (by suffix), as a `.gitattributes` would say."""
        target = self._revision_dir(repo_id, revision) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if lfs if lfs is not None else path.endswith(LFS_SUFFIXES):
            self.lfs_files.add((repo_id, revision, path))

    def add_repo(self, repo_id: str, revision: str = "main") -> None:
        """An empty repo (or revision)."""
        self._revision_dir(repo_id, revision).mkdir(parents=True, exist_ok=True)

    def set_fault(self, repo_id: str, path: str, kind: str, times: Optional[int] = None) -> None:
        """Misbehave on GETs of `path`: "truncate" sends half the body then closes; "wrong_etag"
        advertises the hash of other bytes; "stall" sends half and then hangs. `times`: how many
        GETs (None: all)."""
        assert kind in FAULTS, kind
        self.faults[(repo_id, path)] = Fault(kind, times)

    def set_hostile(
        self, repo_id: str, path: str, *, etag: Optional[str] = None, commit: Optional[str] = None, body: Optional[str] = None
    ) -> None:
        """Lie about `path` on every request: send `etag` as its ETag, `commit` as X-Repo-Commit,
        and a `body` of HOSTILE_BODIES instead of its bytes."""
        assert body is None or body in HOSTILE_BODIES, body
        self.hostile[(repo_id, path)] = Hostility(etag, commit, body)

    def protect(self, repo_id: str, token: str, gated: bool = False) -> None:
        """Serve `repo_id` only to requests with `Authorization: Bearer <token>`: others get what the
        Hub answers for a private repo (401 RepoNotFound) or, with `gated`, a gated one (403 GatedRepo)."""
        self.protected[repo_id] = (token, gated)

    def commit(self, repo_id: str, revision: str = "main") -> str:
        """The commit hash of `revision`: a sha1 of its file listing, like a real commit's 40 hex."""
        directory = self._revision_dir(repo_id, revision)
        listing = "".join(f"{path}\0{_git_sha1(data)}\n" for path, data in sorted(_files(directory).items()))
        return hashlib.sha1(f"commit {repo_id}\n{listing}".encode()).hexdigest()

    def count(self, method: Optional[str] = None) -> int:
        """How many requests (of `method`, if given) the server has answered."""
        with self._lock:
            return sum(1 for logged, _ in self.requests if method is None or logged == method)

    # --- lookups for the handler ---------------------------------------------------------------

    def _revision_dir(self, repo_id: str, revision: str) -> Path:
        return self.folder / repo_id / quote(revision, safe="")

    def _repo_exists(self, repo_id: str) -> bool:
        return (self.folder / repo_id).is_dir() and repo_id.count("/") <= 1

    def _find_revision(self, repo_id: str, revision: str) -> Optional[str]:
        """The branch or tag named `revision`, or whose commit hash is `revision`."""
        if self._revision_dir(repo_id, revision).is_dir():
            return revision
        for directory in (self.folder / repo_id).iterdir():
            if self.commit(repo_id, unquote(directory.name)) == revision:
                return unquote(directory.name)
        return None

    def _blob_by_sha256(self, sha256: str) -> Optional[Tuple[str, str, bytes]]:
        """The repo, file and bytes of an LFS blob (what a CDN would serve under its sha256)."""
        for repo_id, revision, path in self.lfs_files:
            file = self._revision_dir(repo_id, revision) / path
            if file.is_file():
                data = file.read_bytes()
                if hashlib.sha256(data).hexdigest() == sha256:
                    return repo_id, path, data
        return None

    def _take_fault(self, repo_id: str, path: str, kinds: Tuple[str, ...]) -> Optional[str]:
        """The fault of one of `kinds` set on this file, counting it as used."""
        with self._lock:
            fault = self.faults.get((repo_id, path))
            if fault is None or fault.kind not in kinds or fault.remaining == 0:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault.kind


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        with self.hub._lock:
            self.hub.requests.append((self.command, self.path))
            if self.headers.get("Authorization"):
                self.hub.authorizations.append(self.headers["Authorization"])
        path = unquote(urlsplit(self.path).path)
        raw_path = urlsplit(self.path).path
        if path.startswith("/api/models/"):
            self._api(path[len("/api/models/") :])
        elif path.startswith("/lfs/"):
            self._lfs_blob(path[len("/lfs/") :], send_body)
        elif "/resolve/" in raw_path:
            repo_id, _, rest = raw_path.lstrip("/").partition("/resolve/")
            revision, _, file_path = rest.partition("/")
            self._resolve(unquote(repo_id), unquote(revision), unquote(file_path), send_body)
        else:
            self._error(404, None, "not a Hub route")

    def _resolve(self, repo_id: str, revision: str, file_path: str, send_body: bool) -> None:
        if not self.hub._repo_exists(repo_id):
            return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        if repo_id in self.hub.protected:
            token, gated = self.hub.protected[repo_id]
            if self.headers.get("Authorization") != f"Bearer {token}":
                if gated:
                    return self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted")
                return self._error(401, "RepoNotFound", f"Repository {repo_id} not found")
        branch = self.hub._find_revision(repo_id, revision)
        if branch is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        commit = self.hub.commit(repo_id, branch)
        file = self.hub._revision_dir(repo_id, branch) / file_path
        if not file.is_file():
            return self._error(404, "EntryNotFound", f"{file_path} does not exist", commit=commit)
        data = file.read_bytes()
        wrong = self.command == "HEAD" and self.hub._take_fault(repo_id, file_path, ("wrong_etag",)) is not None
        lies = self.hub.hostile.get((repo_id, file_path), Hostility())
        commit = lies.commit if lies.commit is not None else commit
        if (repo_id, branch, file_path) in self.hub.lfs_files:
            sha256 = hashlib.sha256(data + (b"!" if wrong else b"")).hexdigest()
            real_sha256 = hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.hub.port}/lfs/{real_sha256}")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", lies.etag if lies.etag is not None else f'"{sha256}"')
            if lies.body != "unsized":
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{_git_sha1(b"version https://git-lfs.github.com/spec/v1")}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = f'"{_git_sha1(data + (b"!" if wrong else b""))}"' if lies.etag is None else lies.etag
        self._send_bytes(data, {"X-Repo-Commit": commit, "ETag": etag}, send_body, (repo_id, file_path))

    def _lfs_blob(self, sha256: str, send_body: bool) -> None:
        found = self.hub._blob_by_sha256(sha256)
        if found is None:
            return self._error(404, None, "no such blob")
        repo_id, path, data = found
        self._send_bytes(data, {"ETag": f'"{sha256}"'}, send_body, (repo_id, path))

    def _send_bytes(self, data: bytes, headers: Dict[str, str], send_body: bool, key: Tuple[str, str]) -> None:
        lies = self.hub.hostile.get(key)
        if lies is not None and lies.body is not None and (send_body or lies.body == "unsized"):
            return self._send_hostile_body(data, headers, lies.body, send_body)
        start = 0
        range_header = self.headers.get("Range", "")
        if send_body and range_header.startswith("bytes=") and range_header.endswith("-"):
            start = int(range_header[len("bytes=") : -1])
        self.send_response(206 if start else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not send_body:
            return
        fault = self.hub._take_fault(*key, ("truncate", "stall"))
        if fault is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if fault == "stall":
            time.sleep(600)
        self.close_connection = True

    def _send_hostile_body(self, data: bytes, headers: Dict[str, str], kind: str, send_body: bool) -> None:
        """"oversize": Content-Length and body twice the file; "endless"/"unsized": a chunked body
        that repeats the file until the client hangs up (or ENDLESS_CAP)."""
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        if kind == "oversize":
            self.send_header("Content-Length", str(2 * len(data)))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not send_body:  # a HEAD: headers only
            return
        block = (data or b"x") * max(1, 65536 // max(1, len(data)))
        try:
            if kind == "oversize":
                self.wfile.write(data + data)
                self._count(2 * len(data))
                return
            while self.hub.body_bytes_sent < ENDLESS_CAP:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                self._count(len(block))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _count(self, sent: int) -> None:
        with self.hub._lock:
            self.hub.body_bytes_sent += sent

    def _api(self, route: str) -> None:
        repo_id, revision, tree = route, "main", False
        for marker in ("/revision/", "/tree/"):
            if marker in route:
                repo_id, _, revision = route.partition(marker)
                tree = marker == "/tree/"
        if not self.hub._repo_exists(repo_id):
            return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
        branch = self.hub._find_revision(repo_id, revision)
        if branch is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        files = _files(self.hub._revision_dir(repo_id, branch))
        if tree:
            listing = [
                _tree_entry(path, data, lfs=(repo_id, branch, path) in self.hub.lfs_files)
                for path, data in sorted(files.items())
            ]
        else:
            listing = {
                "id": repo_id,
                "modelId": repo_id,
                "sha": self.hub.commit(repo_id, branch),
                "siblings": [{"rfilename": path} for path in sorted(files)],
            }
        self._send_bytes(json.dumps(listing).encode(), {"Content-Type": "application/json"}, True, ("", ""))

    def _error(self, status: int, code: Optional[str], message: str, commit: Optional[str] = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _tree_entry(path: str, data: bytes, lfs: bool) -> dict:
    """One file as `/api/models/{repo}/tree/{revision}` lists it."""
    entry = {"type": "file", "path": path, "size": len(data), "oid": _git_sha1(data)}
    if lfs:  # 134: the size of a git-lfs pointer file
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _files(directory: Path) -> Dict[str, bytes]:
    if not directory.is_dir():
        return {}
    return {path.relative_to(directory).as_posix(): path.read_bytes() for path in directory.rglob("*") if path.is_file()}
