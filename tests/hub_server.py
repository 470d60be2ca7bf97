"""A loopback emulation of the Hugging Face Hub's HTTP API: just the calls the real `huggingface_hub` client makes to
pull a model (model_info, HEAD/GET resolve) and to push a folder without Xet (create repo, validate YAML, preupload
answered `regular`, NDJSON commit, branches), with repos, branches and tags kept in memory.

It checks the API contract the client relies on, not huggingface.co itself: no Xet or LFS transfer, no permissions
beyond "a write needs a bearer token", no rate limits. Requests it does not know are answered 404 and recorded in
`unhandled`, so a test can assert the client made no call the emulation ignores.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


def free_port() -> int:
    """A port nothing listens on now, to put in HF_ENDPOINT before huggingface_hub is imported."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class Repo:
    def __init__(self, private: bool = False):
        self.private = private
        self.commits: dict[str, dict[str, bytes]] = {}  # sha -> the full tree at that commit
        self.branches: dict[str, str] = {}
        self.tags: dict[str, str] = {}

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.branches.get(revision) or self.tags.get(revision)


class FakeHub:
    """`with FakeHub(port) as hub:` serves on 127.0.0.1 at `hub.url` from a thread; `stop()` and `start()` cut and
    restore the network while the repos stay. Model repos are keyed ORG/NAME, dataset repos datasets/ORG/NAME."""

    def __init__(self, port: int = 0):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, int]] = []  # (method, path fragment, status), each used once
        self.lock = threading.Lock()
        self.port = port
        self.server = None
        self.connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Shut down, closing the kept-alive connections too: later requests find the port closed (a network cut)."""
        self.server.shutdown()
        self.server.server_close()
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.stop()

    # ---- seeding and inspection, for the tests ----
    def create_repo(self, repo_id: str, private: bool = False) -> Repo:
        repo = self.repos[repo_id] = Repo(private)
        self.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial")
        return repo

    def commit(self, repo_id: str, files: dict[str, bytes], message: str = "", branch: str = "main",
               deleted: tuple[str, ...] = ()) -> str:
        repo = self.repos[repo_id]
        with self.lock:
            parent = repo.branches.get(branch)
            tree = dict(repo.commits[parent]) if parent else {}
            tree.update(files)
            for path in deleted:
                tree.pop(path, None)
            digest = hashlib.sha1(f"{parent}\n{message}\n{time.time_ns()}".encode())
            for path in sorted(tree):
                digest.update(f"{path}:{git_blob_sha(tree[path])}".encode())
            sha = digest.hexdigest()
            repo.commits[sha] = tree
            repo.branches[branch] = sha
        return sha

    def tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        repo = self.repos[repo_id]
        repo.tags[tag] = repo.resolve(revision)
        return repo.tags[tag]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(revision)]

    def fail_once(self, method: str, path_fragment: str, status: int = 500) -> None:
        self.failures.append((method, path_fragment, status))


def _handler_for(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output clean
            pass

        def setup(self):
            super().setup()
            hub.connections.add(self.connection)

        def finish(self):
            hub.connections.discard(self.connection)
            super().finish()

        # ---- plumbing ----
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, payload, headers: dict | None = None):
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str, message: str, head: bool = False):
            self._send(status, json.dumps({"error": message}).encode(),
                       {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}, head)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorized(self) -> bool:
            if self.headers.get("Authorization", "").startswith("Bearer "):
                return True
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return False

        def _dispatch(self, method: str):
            path = urlsplit(self.path).path
            hub.requests.append((method, path))
            body = self._body() if method in ("POST", "PUT") else b""
            for failure in list(hub.failures):
                if failure[0] == method and failure[1] in path:
                    hub.failures.remove(failure)
                    return self._error(failure[2], "ServerError", "emulated server error")
            if path.startswith("/api/"):
                return self._api(method, path[len("/api/"):], body)
            parts = path.strip("/").split("/")
            prefix = "datasets/" if parts[0] == "datasets" else ""  # dataset repos live under datasets/ORG/NAME
            parts = parts[1:] if prefix else parts
            if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve(f"{prefix}{parts[0]}/{parts[1]}", unquote(parts[3]),
                                     unquote("/".join(parts[4:])), head=method == "HEAD")
            self._unhandled(method, path)

        def _unhandled(self, method: str, path: str):
            hub.unhandled.append((method, path))
            self._error(404, "NotFound", f"the Hub emulation does not implement {method} {path}")

        do_GET = lambda self: self._dispatch("GET")  # noqa: E731
        do_HEAD = lambda self: self._dispatch("HEAD")  # noqa: E731
        do_POST = lambda self: self._dispatch("POST")  # noqa: E731

        # ---- file download ----
        def _resolve(self, repo_id: str, revision: str, file_path: str, head: bool):
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found", head)
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            content = repo.commits[sha].get(file_path)
            if content is None:
                return self._error(404, "EntryNotFound", f"{file_path} does not exist at {revision}", head)
            etag = f'"{git_blob_sha(content)}"'
            self._send(200, content, {"X-Repo-Commit": sha, "ETag": etag, "Content-Type": "application/octet-stream"},
                       head)

        # ---- API ----
        def _api(self, method: str, rest: str, body: bytes):
            if method == "GET" and rest == "whoami-v2":
                if self._authorized():
                    self._json(200, {"type": "user", "name": "tester", "orgs": [], "auth": {"type": "access_token"}})
                return
            if method == "GET" and rest == "agent-harnesses":  # optional registry; the client ignores a failure
                return self._error(404, "NotFound", "not emulated")
            if method == "POST" and rest == "validate-yaml":
                return self._json(200, {"errors": [], "warnings": []})
            if method == "POST" and rest == "repos/create":
                return self._create_repo(json.loads(body or b"{}"))
            parts = rest.split("/")
            if parts[0] not in ("models", "datasets") or len(parts) < 3:
                return self._unhandled(method, "/api/" + rest)
            prefix = "datasets/" if parts[0] == "datasets" else ""
            repo_id = f"{prefix}{parts[1]}/{parts[2]}"
            action, arg = (parts[3:4] or [""])[0], unquote("/".join(parts[4:]))
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            if method == "GET" and action in ("", "revision"):
                return self._model_info(repo_id, repo, arg or "main")
            if method == "GET" and action == "tree":
                revision, _, folder = arg.partition("/")
                return self._tree(repo, revision, folder.strip("/"), "recursive=true" in self.path.lower())
            if method == "POST" and action == "preupload":
                if not self._authorized():
                    return
                files = json.loads(body)["files"]
                tree = repo.commits.get(repo.resolve(arg) or "", {})
                return self._json(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                     "oid": git_blob_sha(tree[f["path"]]) if f["path"] in tree else None} for f in files]})
            if method == "POST" and action == "commit":
                return self._commit(repo_id, repo, arg, body) if self._authorized() else None
            if method == "POST" and action == "branch":
                return self._create_branch(repo, arg, json.loads(body or b"{}")) if self._authorized() else None
            self._unhandled(method, "/api/" + rest)

        def _model_info(self, repo_id: str, repo: Repo, revision: str):
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            siblings = [{"rfilename": path} for path in sorted(repo.commits[sha])]
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                             "siblings": siblings, "tags": [], "downloads": 0, "likes": 0})

        def _tree(self, repo: Repo, revision: str, folder: str, recursive: bool):
            sha = repo.resolve(revision)
            if sha is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            prefix = f"{folder}/" if folder else ""
            entries, folders = [], set()
            for path, content in sorted(repo.commits[sha].items()):
                if not path.startswith(prefix):
                    continue
                rest = path[len(prefix):]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/")[0])
                    continue
                entries.append({"type": "file", "path": path, "size": len(content), "oid": git_blob_sha(content)})
            if folder and not entries and not folders:
                return self._error(404, "EntryNotFound", f"{folder} does not exist at {revision}")
            self._json(200, [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)] + entries)

        def _create_repo(self, payload: dict):
            if not self._authorized():
                return
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else (
                f"tester/{payload['name']}")
            repo_id = ("datasets/" if payload.get("type") == "dataset" else "") + repo_id
            if repo_id in hub.repos:  # the client reads the url from this answer too (create_repo(exist_ok=True))
                return self._json(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
            hub.create_repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
            self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def _create_branch(self, repo: Repo, branch: str, payload: dict):
            if branch in repo.branches:
                return self._error(409, "BranchExists", f"Branch {branch} already exists")
            start = repo.resolve(payload.get("startingPoint") or "main")
            if start is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {payload.get('startingPoint')}")
            repo.branches[branch] = start
            self._json(200, {})

        def _commit(self, repo_id: str, repo: Repo, revision: str, body: bytes):
            if revision not in repo.branches:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            header = next(item["value"] for item in lines if item["key"] == "header")
            files, deleted = {}, []
            for item in lines:
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    deleted.append(item["value"]["path"])
                elif item["key"] != "header":  # lfsFile: the emulation never asks for LFS
                    return self._error(400, "BadRequest", f"unsupported commit operation {item['key']}")
            sha = hub.commit(repo_id, files, header.get("summary", ""), branch=revision, deleted=tuple(deleted))
            self._json(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha,
                             "pullRequestUrl": None, "success": True})

    return Handler
