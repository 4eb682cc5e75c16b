"""Fake of the Hugging Face Hub's model API, as the official client (huggingface_hub 2.x) uses it to download.

Routes, each checked against huggingface_hub 2.4.0's source (hf_api.py, file_download.py, _snapshot_download.py,
utils/_http.py):

- ``GET /api/models/{repo}/revision/{rev}``: the model's info (``HfApi.model_info``): ``id``, ``sha`` and
  ``siblings`` (``rfilename``, with ``files_metadata=True`` also ``size`` and ``blobId``).
- ``GET /api/models/{repo}/tree/{rev}?recursive=True``: the file list (``HfApi.list_repo_tree``, which
  ``snapshot_download`` calls): ``type`` file or directory, ``path``, ``size``, ``oid``; one page (no Link header).
- ``HEAD /{repo}/resolve/{rev}/{path}``: a file's metadata (``get_hf_file_metadata``): ``X-Repo-Commit``, ``ETag``
  and ``Content-Length``; ``GET`` the same URL: its bytes.

Errors as the Hub words them for the client: an unknown repo 401 with ``X-Error-Code: RepoNotFound``, an unknown
revision 404 ``RevisionNotFound``, an unknown file 404 ``EntryNotFound``. Not modelled: redirects to a CDN for LFS
files, Xet storage, gated repos, auth. ``fake.fetched`` counts the GETs of each ``repo/path``.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from .base import FakeServer, Request, Response

#: a repo: its commit and its files (path -> bytes)
Repo = tuple[str, dict[str, bytes]]

_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


class FakeHub(FakeServer):
    provider = "hub"

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        # each repo's one commit: a stable sha1-looking id from its name
        self.repos: dict[str, Repo] = {
            name: (hashlib.sha1(name.encode()).hexdigest(), files) for name, files in repos.items()
        }
        self.fetched: Counter[str] = Counter()
        super().__init__(b"")

    def setup_routes(self) -> None:
        self.route("GET", rf"/api/models/{_REPO}/revision/(?P<rev>[^/]+)$", self.model_info)
        self.route("GET", rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)$", self.tree)
        for method in ("HEAD", "GET"):
            self.route(method, rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", self.resolve)

    def auth_error(self, req: Request) -> Response | None:
        return None  # public repos only

    def error_body(self, status: int, message: str, code: str | None = None) -> dict[str, str]:
        return {"error": message}

    def commit(self, repo: str) -> str:
        return self.repos[repo][0]

    def _find(self, req: Request) -> tuple[str, dict[str, bytes]] | Response:
        assert req.match is not None
        repo, rev = req.match["repo"], req.match["rev"]
        if repo not in self.repos:
            return _error(401, "RepoNotFound", f"Repository Not Found for url: {req.path}.")
        sha, files = self.repos[repo]
        if rev not in (sha, "main"):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return sha, files

    def model_info(self, req: Request) -> Response:
        found = self._find(req)
        if isinstance(found, Response):
            return found
        sha, files = found
        siblings = [{"rfilename": p, "size": len(b), "blobId": _oid(b)} for p, b in sorted(files.items())]
        return Response(200, {"id": req.match["repo"] if req.match else "", "sha": sha, "siblings": siblings})

    def tree(self, req: Request) -> Response:
        found = self._find(req)
        if isinstance(found, Response):
            return found
        _, files = found
        folders = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        entries: list[dict[str, object]] = [{"type": "directory", "path": d, "oid": _oid(d.encode())} for d in folders]
        entries += [{"type": "file", "path": p, "size": len(b), "oid": _oid(b)} for p, b in sorted(files.items())]
        return Response(200, entries)

    def resolve(self, req: Request) -> Response:
        found = self._find(req)
        if isinstance(found, Response):
            return found
        sha, files = found
        assert req.match is not None
        path = req.match["path"]
        if path not in files:
            return _error(404, "EntryNotFound", f"Entry not found: {path}")
        if req.method == "GET":
            with self.lock:
                self.fetched[f"{req.match['repo']}/{path}"] += 1
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_oid(files[path])}"'}
        return Response(200, files[path], headers, content_type="application/octet-stream")


def _oid(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _error(status: int, code: str, message: str) -> Response:
    return Response(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})
