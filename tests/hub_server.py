"""A small Hugging Face Hub-compatible HTTP server for offline tests.

It implements what ``huggingface_hub`` (2.x) needs to create repositories,
commit files and download snapshots, with an in-memory git-like store: every
commit is a full snapshot of the file tree, branches point at commits, blob
ids are git blob SHA-1s and commit ids are 40-hex SHA-1s.

Endpoints (``{t}`` is ``model``/``dataset``/``space``, ``{repo}`` is ``org/name``):

- ``POST /api/repos/create``: 200 ``{"url"}``, 409 if it exists.
- ``GET /api/{t}s/{repo}`` and ``.../revision/{rev}``: ``{id, sha, siblings, ...}``.
- ``GET /api/{t}s/{repo}/tree/{rev}[/{path}]?recursive=``: entries
  ``{type, path, oid, size}``, paged with a ``Link: <...>; rel="next"`` header
  (``page_size`` entries per page).
- ``HEAD``/``GET /[{t}s/]{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``,
  quoted ``ETag`` (the blob id), ``Content-Length``; ``Range: bytes=a-b``.
- ``POST /api/validate-yaml``: parses the README front matter (and its model-index).
- ``POST /api/{t}s/{repo}/preupload/{rev}``: every file ``"regular"``, with
  the existing blob id as ``oid`` so unchanged files are skipped.
- ``POST /api/{t}s/{repo}/commit/{rev}``: ndjson with base64 ``file``,
  ``deletedFile`` and ``deletedFolder`` lines (``lfsFile`` is refused).
- ``POST /api/{t}s/{repo}/branch/{branch}``: create a branch (409 if it exists).

Errors are 404s with ``X-Error-Code: RepoNotFound | RevisionNotFound |
EntryNotFound`` (file 404s carry ``X-Repo-Commit``). Authentication, LFS/Xet
transfers, pull requests and gated repositories are not implemented.

>>> with HubServer() as hub:
...     sha = hub.add_commit("acme/demo", {"a.txt": b"hello"}, create=True)
...     len(sha), hub.file("acme/demo", "a.txt")
(40, b'hello')
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

GITATTRIBUTES = (
    b"*.h5 filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
)
_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_FRONT_MATTER = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")


def blob_oid(data: bytes) -> str:
    """Git blob id of ``data`` (what the Hub reports as a regular file's ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclasses.dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    date: str


@dataclasses.dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: dict[str, Commit] = dataclasses.field(default_factory=dict)
    branches: dict[str, str] = dataclasses.field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        if _SHA1.match(revision) and revision in self.commits:
            return revision
        return None


class HubError(Exception):
    """An HTTP error answer: status, optional X-Error-Code, JSON body."""

    def __init__(
        self, status: int, message: str, code: str | None = None, commit: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class HubServer:
    """In-memory Hub on ``127.0.0.1:<random port>``; ``url`` is its endpoint.

    Attributes:
        repos: ``(repo_type, repo_id) -> Repo``.
        requests: ``(method, path)`` of every request received, in order.
        page_size: Tree-listing page size (``Link`` paging beyond it).
        namespace: Owner used when ``create_repo`` names no organization.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, page_size: int = 1000):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.page_size = page_size
        self.namespace = "user"
        self._lock = threading.RLock()
        self._connections: set[socket.socket] = set()
        self._counter = itertools.count()
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:  # also drop kept-alive client connections
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # === Store ===

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> Repo:
        with self._lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            repo = Repo(repo_type, repo_id, private)
            self.repos[key] = repo
            self._commit(repo, "main", {".gitattributes": GITATTRIBUTES}, [], "initial commit")
            return repo

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(
        self,
        repo: Repo,
        branch: str,
        added: dict[str, bytes],
        deleted: list[tuple[str, bool]],
        message: str,
    ) -> str:
        with self._lock:
            parent = repo.branches.get(branch)
            files = dict(repo.commits[parent].files) if parent else {}
            for path, is_folder in deleted:
                if is_folder:
                    prefix = path.rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(prefix)}
                elif files.pop(path, None) is None:
                    raise HubError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
            files.update(added)
            tree = "".join(f"{p} {blob_oid(d)}\n" for p, d in sorted(files.items()))
            body = f"parent {parent}\n{tree}\n{message}\n{next(self._counter)}"
            sha = hashlib.sha1(body.encode()).hexdigest()
            date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            repo.commits[sha] = Commit(sha, parent, message, files, date)
            repo.branches[branch] = sha
            return sha

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        message: str = "test commit",
        create: bool = False,
        repo_type: str = "model",
    ) -> str:
        """Commit ``files`` directly (no path validation: tests may inject odd names)."""
        if create and (repo_type, repo_id) not in self.repos:
            self.create_repo(repo_id, repo_type)
        return self._commit(self.repo(repo_id, repo_type), branch, files, [], message)

    def file(
        self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model"
    ) -> bytes:
        repo = self.repo(repo_id, repo_type)
        return repo.commits[repo.resolve(revision)].files[path]

    def commit_count(self, repo_id: str, repo_type: str = "model") -> int:
        return len(self.repo(repo_id, repo_type).commits)

    # === Request handling ===

    def handle(
        self, method: str, raw_path: str, headers: Any, body: bytes
    ) -> tuple[int, dict, Any]:
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        with self._lock:
            self.requests.append((method, split.path))
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create(json.loads(body or b"{}"))
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in _TYPES:
            repo_type = _TYPES[parts[1]]
            repo = self.repo("/".join(parts[2:4]), repo_type)
            rest = parts[4:]
            if not rest and method == "GET":
                return self._info(repo, "main")
            action = rest[0] if rest else ""
            if action == "revision" and len(rest) == 2 and method == "GET":
                return self._info(repo, rest[1])
            if action == "tree" and len(rest) >= 2 and method == "GET":
                return self._tree(repo, rest[1], "/".join(rest[2:]), query, split.path)
            if action == "preupload" and len(rest) == 2 and method == "POST":
                return self._preupload(repo, rest[1], json.loads(body or b"{}"))
            if action == "commit" and len(rest) == 2 and method == "POST":
                if query.get("create_pr"):
                    raise HubError(400, "Pull requests are not implemented by the test server")
                return self._commit_request(repo, rest[1], body)
            if action == "branch" and len(rest) >= 2 and method == "POST":
                return self._branch(repo, "/".join(rest[1:]), json.loads(body or b"{}"))
            raise HubError(404, f"Unknown API route {split.path}")
        repo_type = "model"
        if parts and parts[0] in ("datasets", "spaces"):
            repo_type, parts = _TYPES[parts[0]], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo = self.repo("/".join(parts[:2]), repo_type)
            return self._resolve(repo, parts[3], "/".join(parts[4:]), headers)
        raise HubError(404, f"Not found: {split.path}")

    def _sha(self, repo: Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _create(self, payload: dict) -> tuple[int, dict, Any]:
        namespace = payload.get("organization") or self.namespace
        repo_id = f"{namespace}/{payload['name']}"
        repo_type = payload.get("type") or "model"
        private = payload.get("private") or payload.get("visibility") == "private"
        try:
            repo = self.create_repo(repo_id, repo_type, bool(private))
        except HubError as error:
            if error.status == 409:
                existing = self.repos[(repo_type, repo_id)]
                return 409, {}, {"error": error.message, "url": self._repo_url(existing)}
            raise
        return 200, {}, {"url": self._repo_url(repo), "name": repo_id, "id": repo_id}

    def _info(self, repo: Repo, revision: str) -> tuple[int, dict, Any]:
        commit = repo.commits[self._sha(repo, revision)]
        org = repo.repo_id.split("/")[0]
        return (
            200,
            {},
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": org,
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": repo.commits[next(iter(repo.commits))].date,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            },
        )

    def _tree(self, repo: Repo, revision: str, prefix: str, query: dict, path: str) -> tuple:
        commit = repo.commits[self._sha(repo, revision)]
        recursive = query.get("recursive", "false").lower() in ("true", "1")
        base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if base and not any(p.startswith(base) for p in commit.files):
            raise HubError(404, f"Entry not found: {prefix}", "EntryNotFound", commit.sha)
        entries: dict[str, dict] = {}
        for file_path, data in sorted(commit.files.items()):
            if not file_path.startswith(base):
                continue
            rest = file_path[len(base) :].split("/")
            for depth in range(1, len(rest)):
                if not recursive and depth > 1:
                    break
                folder = base + "/".join(rest[:depth])
                oid = hashlib.sha1(f"tree {commit.sha} {folder}".encode()).hexdigest()
                entries.setdefault(
                    folder, {"type": "directory", "oid": oid, "size": 0, "path": folder}
                )
            if recursive or len(rest) == 1:
                entries[file_path] = {
                    "type": "file",
                    "oid": blob_oid(data),
                    "size": len(data),
                    "path": file_path,
                }
        listing = [entries[k] for k in sorted(entries)]
        start = int(query.get("cursor", "0"))
        page = listing[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(listing):
            next_url = (
                f"{self.url}{quote(path)}?recursive={str(recursive).lower()}"
                f"&cursor={start + self.page_size}"
            )
            headers["Link"] = f'<{next_url}>; rel="next"'
        return 200, headers, page

    def _resolve(self, repo: Repo, revision: str, file_path: str, headers: Any) -> tuple:
        sha = self._sha(repo, revision)
        data = repo.commits[sha].files.get(file_path)
        if data is None:
            raise HubError(404, f"Entry not found: {file_path}", "EntryNotFound", sha)
        out = {
            "X-Repo-Commit": sha,
            "ETag": f'"{blob_oid(data)}"',
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        status, payload = 200, data
        match = re.match(r"^bytes=(\d+)-(\d*)$", headers.get("Range") or "")
        if match and int(match.group(1)) < len(data):
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            payload = data[start : end + 1]
            out["Content-Range"] = f"bytes {start}-{start + len(payload) - 1}/{len(data)}"
            status = 206
        return status, out, payload

    def _validate_yaml(self, payload: dict) -> tuple[int, dict, Any]:
        import yaml

        match = _FRONT_MATTER.match(payload.get("content", ""))
        if match is None:
            return (
                200,
                {},
                {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]},
            )
        try:
            meta = yaml.safe_load(match.group(2))
        except yaml.YAMLError as error:
            return 400, {}, {"errors": [{"message": f"Invalid YAML: {error}"}]}
        if not isinstance(meta, dict):
            return 400, {}, {"errors": [{"message": "Metadata must be a YAML mapping"}]}
        if "model-index" in meta:
            from huggingface_hub.repocard_data import model_index_to_eval_results

            try:
                model_index_to_eval_results(meta["model-index"])
            except Exception as error:
                return 400, {}, {"errors": [{"message": f'"model-index" is invalid: {error!r}'}]}
        return 200, {}, {"errors": [], "warnings": []}

    def _preupload(self, repo: Repo, revision: str, payload: dict) -> tuple[int, dict, Any]:
        files = repo.commits[self._sha(repo, revision)].files
        return (
            200,
            {},
            {
                "files": [
                    {
                        "path": item["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": blob_oid(files[item["path"]]) if item["path"] in files else None,
                    }
                    for item in payload.get("files", [])
                ],
                "commitOid": self._sha(repo, revision),
            },
        )

    def _commit_request(self, repo: Repo, revision: str, body: bytes) -> tuple[int, dict, Any]:
        if revision not in repo.branches:
            raise HubError(
                404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound"
            )
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first ndjson line must be the commit header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and not repo.branches[revision].startswith(parent):
            raise HubError(412, f"Parent commit {parent} is not the head of {revision}")
        added: dict[str, bytes] = {}
        deleted: list[tuple[str, bool]] = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if not _valid_path(path.rstrip("/") if key == "deletedFolder" else path):
                raise HubError(400, f"Invalid path in commit: {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                added[path] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append((path, key == "deletedFolder"))
            else:
                raise HubError(
                    400, f"Unsupported commit operation {key!r} (preupload says regular)"
                )
        sha = self._commit(repo, revision, added, deleted, header.get("summary", ""))
        return (
            200,
            {},
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self._repo_url(repo)}/commit/{sha}",
                "hookOutput": "",
            },
        )

    def _branch(self, repo: Repo, branch: str, payload: dict) -> tuple[int, dict, Any]:
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = payload.get("startingPoint") or "main"
        with self._lock:
            repo.branches[branch] = self._sha(repo, start)
        return 200, {}, {}


def _valid_path(path: str) -> bool:
    parts = path.split("/")
    return (
        bool(path)
        and "\\" not in path
        and "\0" not in path
        and all(part not in ("", ".", "..") for part in parts)
    )


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self, method: str) -> None:
            body = self._body() if method == "POST" else b""
            try:
                status, headers, payload = server.handle(method, self.path, self.headers, body)
            except HubError as error:
                status, payload = error.status, {"error": error.message}
                headers = {"X-Error-Message": error.message}
                if error.code:
                    headers["X-Error-Code"] = error.code
                if error.commit:
                    headers["X-Repo-Commit"] = error.commit
            except Exception as error:  # a bug in the server: answer 500, keep serving
                status, headers, payload = 500, {}, {"error": f"{type(error).__name__}: {error}"}
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            if not isinstance(payload, bytes):
                self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
