"""Fake GitHub and GitLab REST servers for the comment/note that ``mlgate report publish`` keeps.

Real HTTP servers on 127.0.0.1 (threads), strict about what they accept:

- :class:`FakeGitHub` serves the three "Issue comments" operations a pull request's comment
  needs (list, create, update). Every request (path parameters, query, JSON body) and every
  response it returns is validated with openapi-core against GitHub's official REST description
  from npm ``@octokit/openapi`` (``api.github.com.json``, reduced to these operations and the
  components they reference). An invalid request answers 422 and is recorded in ``problems``;
  an unknown path answers 404 and is recorded too. ``Authorization: Bearer <token>`` is required
  (401 "Bad credentials" otherwise, as GitHub answers). Listing paginates with a ``Link`` header.
- :class:`FakeGitLab` serves "Notes" on merge requests (list, create, update) under ``/api/v4``.
  GitLab's OpenAPI description is not published in a form that covers these endpoints (see
  ``shared/specs/gitlab/SOURCE.md``), so requests are checked against the documented parameters
  (doc/api/notes.md: ``body`` required, at most 1,000,000 characters; ``sort`` asc|desc;
  ``order_by`` created_at|updated_at) and responses against ``tests/fixtures/ci/gitlab-note.schema.json``,
  written from the documented note object. ``PRIVATE-TOKEN`` is required (401 otherwise).
  Listing paginates with ``X-Next-Page``/``X-Page``/``X-Per-Page``/``X-Total`` and ``Link``.

Both can answer the next N requests with a given status (``fail_next``), with ``Retry-After``,
to exercise retries.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jsonschema

ROOT = Path(__file__).resolve().parents[3]
OCTOKIT_OPENAPI = ROOT / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
NOTE_SCHEMA = ROOT / "tests" / "fixtures" / "ci" / "gitlab-note.schema.json"

GITHUB_OPERATIONS = {
    "/repos/{owner}/{repo}/issues/{issue_number}/comments": ("get", "post"),
    "/repos/{owner}/{repo}/issues/comments/{comment_id}": ("patch",),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refs(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref)
        for v in node.values():
            out |= _refs(v)
    elif isinstance(node, list):
        for v in node:
            out |= _refs(v)
    return out


def github_subset_spec(path: Path = OCTOKIT_OPENAPI) -> dict[str, Any]:
    """GitHub's OpenAPI document reduced to :data:`GITHUB_OPERATIONS` and the components they use."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    paths = {p: {m: doc["paths"][p][m] for m in methods} for p, methods in GITHUB_OPERATIONS.items()}
    components: dict[str, dict[str, Any]] = {}
    todo = _refs(paths)
    seen: set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = doc["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        todo |= _refs(node)
    return {"openapi": doc["openapi"], "info": doc["info"], "servers": [{"url": "/"}], "paths": paths,
            "components": components}


class _Server:
    """A ThreadingHTTPServer on a free loopback port, calling ``self.handle``."""

    def __init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = outer._dispatch(self.command, self.path, dict(self.headers), raw)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.problems: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes):
        with self.lock:
            self.requests.append((method, path))
            if self.fail_next:
                status, extra = self.fail_next.pop(0)
                return status, extra, {"message": f"fake failure {status}"}
            try:
                return self.handle(method, path, {k.lower(): v for k, v in headers.items()}, raw)
            except Exception as e:  # a bug in the fake or the client: visible in the test
                self.problems.append(f"{method} {path}: {type(e).__name__}: {e}")
                return 500, {}, {"message": "fake server error"}

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes):  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeGitHub(_Server):
    """Issue comments of one repository's pull requests; see the module docstring."""

    def __init__(self, token: str = "ghs_fake_token", repository: str = "acme/wine-model", per_page_max: int = 100):
        from openapi_core import OpenAPI

        self.token = token
        self.repository = repository
        self.per_page_max = per_page_max
        self.openapi = OpenAPI.from_dict(github_subset_spec())
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.next_id = 1000
        super().__init__()

    # -- helpers for tests
    def add_comment(self, number: int, body: str, login: str = "octocat") -> dict[str, Any]:
        with self.lock:
            return self._new_comment(number, body, login)

    def _new_comment(self, number: int, body: str, login: str) -> dict[str, Any]:
        self.next_id += 1
        cid = self.next_id
        api = f"{self.url}/repos/{self.repository}"
        bot = login.endswith("[bot]")
        comment = {
            "id": cid,
            "node_id": f"IC_kwDO{cid:08d}",
            "url": f"{api}/issues/comments/{cid}",
            "html_url": f"https://github.com/{self.repository}/pull/{number}#issuecomment-{cid}",
            "body": body,
            "user": {
                "login": login, "id": 41898282 if bot else 583231, "node_id": "MDQ6VXNlcjE=",
                "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4", "gravatar_id": "",
                "url": f"https://api.github.com/users/{login}", "html_url": f"https://github.com/{login}",
                "followers_url": "https://api.github.com/users/x/followers",
                "following_url": "https://api.github.com/users/x/following{/other_user}",
                "gists_url": "https://api.github.com/users/x/gists{/gist_id}",
                "starred_url": "https://api.github.com/users/x/starred{/owner}{/repo}",
                "subscriptions_url": "https://api.github.com/users/x/subscriptions",
                "organizations_url": "https://api.github.com/users/x/orgs",
                "repos_url": "https://api.github.com/users/x/repos",
                "events_url": "https://api.github.com/users/x/events{/privacy}",
                "received_events_url": "https://api.github.com/users/x/received_events",
                "type": "Bot" if bot else "User", "site_admin": False,
            },
            "created_at": _now(),
            "updated_at": _now(),
            "issue_url": f"{api}/issues/{number}",
            "author_association": "NONE" if bot else "MEMBER",
        }
        self.comments.setdefault(number, []).append(comment)
        return comment

    def _find(self, cid: int) -> dict[str, Any] | None:
        for comments in self.comments.values():
            for c in comments:
                if c["id"] == cid:
                    return c
        return None

    # -- the server
    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes):
        from openapi_core.testing import MockRequest, MockResponse

        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query))
        owner_repo = f"/repos/{self.repository}/"
        m_list = re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/(\d+)/comments", parts.path)
        m_edit = re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/comments/(\d+)", parts.path)
        if not (m_list or m_edit) or not parts.path.startswith(owner_repo):
            self.problems.append(f"unknown path: {method} {path}")
            return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        template = (
            "/repos/{owner}/{repo}/issues/{issue_number}/comments" if m_list
            else "/repos/{owner}/{repo}/issues/comments/{comment_id}"
        )
        request = MockRequest(self.url, method.lower(), parts.path, args=query,
                              headers=headers, data=raw or None, content_type=headers.get("content-type", "application/json").split(";")[0])
        try:
            self.openapi.validate_request(request)
        except Exception as e:
            self.problems.append(f"invalid request {method} {path}: {e} {getattr(e, '__cause__', '')}")
            return 422, {}, {"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest"}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}

        status, out_headers, body = self._route(method, m_list, m_edit, query, raw)
        response = MockResponse(json.dumps(body).encode(), status_code=status, headers=out_headers,
                                content_type="application/json")
        try:
            self.openapi.validate_response(request, response)
        except Exception as e:
            self.problems.append(f"invalid response to {method} {path}: {e} {getattr(e, '__cause__', '')}")
        return status, out_headers, body

    def _route(self, method: str, m_list: Any, m_edit: Any, query: dict[str, str], raw: bytes):
        if m_list and method == "GET":
            number = int(m_list.group(3))
            per_page = min(int(query.get("per_page", 30)), self.per_page_max)
            page = int(query.get("page", 1))
            items = self.comments.get(number, [])
            chunk = items[(page - 1) * per_page: page * per_page]
            headers = {}
            if page * per_page < len(items):
                nxt = f"{self.url}{urlsplit(m_list.group(0)).path}?{urlencode({'per_page': per_page, 'page': page + 1})}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            return 200, headers, chunk
        if m_list and method == "POST":
            number = int(m_list.group(3))
            comment = self._new_comment(number, json.loads(raw)["body"], "github-actions[bot]")
            return 201, {"Location": comment["url"]}, comment
        if m_edit and method == "PATCH":
            comment = self._find(int(m_edit.group(3)))
            if comment is None:
                return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
            comment["body"] = json.loads(raw)["body"]
            comment["updated_at"] = _now()
            return 200, {}, comment
        self.problems.append(f"method not served: {method} {m_list or m_edit}")
        return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


class FakeGitLab(_Server):
    """Merge request notes of one project; see the module docstring."""

    def __init__(self, token: str = "glpat-fake-token", project_id: str = "42"):
        self.token = token
        self.project_id = project_id
        self.note_validator = jsonschema.Draft202012Validator(json.loads(NOTE_SCHEMA.read_text(encoding="utf-8")))
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.next_id = 500
        super().__init__()

    def add_note(self, iid: int, body: str, username: str = "alice", system: bool = False) -> dict[str, Any]:
        with self.lock:
            return self._new_note(iid, body, username, system)

    def _new_note(self, iid: int, body: str, username: str, system: bool = False) -> dict[str, Any]:
        self.next_id += 1
        note = {
            "id": self.next_id, "type": None, "body": body, "attachment": None,
            "author": {"id": 7, "username": username, "name": username.title(), "state": "active",
                       "avatar_url": "https://gitlab.example.com/uploads/-/system/user/avatar/7/a.png",
                       "web_url": f"https://gitlab.example.com/{username}"},
            "created_at": _now().replace("Z", ".000Z"), "updated_at": _now().replace("Z", ".000Z"),
            "system": system, "noteable_id": 9000 + iid, "noteable_type": "MergeRequest",
            "project_id": int(self.project_id), "noteable_iid": iid, "resolvable": False,
            "confidential": False, "internal": False, "imported": False, "imported_from": "none",
        }
        self.notes.setdefault(iid, []).append(note)
        return note

    def _check_note(self, note: Any, where: str) -> None:
        for err in self.note_validator.iter_errors(note):
            self.problems.append(f"invalid response note {where}: {err.message}")

    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes):
        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query))
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes(?:/(\d+))?", parts.path)
        if not m or m.group(1) != self.project_id:
            self.problems.append(f"unknown path: {method} {path}")
            return 404, {}, {"message": "404 Not found"}
        if headers.get("private-token") != self.token:
            return 401, {}, {"message": "401 Unauthorized"}
        iid, note_id = int(m.group(2)), m.group(3)
        allowed = {"GET": {"sort", "order_by", "page", "per_page", "pagination"}, "POST": set(), "PUT": set()}
        if method not in allowed or (note_id is None) == (method == "PUT") or (method == "GET" and note_id):
            self.problems.append(f"method not served: {method} {path}")
            return 405, {}, {"message": "405 Method Not Allowed"}
        unknown = set(query) - allowed[method]
        if unknown:
            self.problems.append(f"unknown query parameters {sorted(unknown)} in {method} {path}")
            return 400, {}, {"message": f"400 Bad request - unknown {sorted(unknown)}"}
        if query.get("sort", "desc") not in ("asc", "desc") or query.get("order_by", "created_at") not in (
            "created_at", "updated_at"
        ):
            self.problems.append(f"invalid sort/order_by in {path}")
            return 400, {}, {"message": "400 Bad request - sort, order_by"}
        if method == "GET":
            per_page = min(int(query.get("per_page", 20)), 100)
            page = int(query.get("page", 1))
            items = sorted(self.notes.get(iid, []), key=lambda n: n["id"], reverse=query.get("sort", "desc") == "desc")
            chunk = items[(page - 1) * per_page: page * per_page]
            for n in chunk:
                self._check_note(n, path)
            total_pages = max(1, -(-len(items) // per_page))
            hdrs = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
                    "X-Total-Pages": str(total_pages), "X-Next-Page": str(page + 1) if page < total_pages else ""}
            if page < total_pages:
                q = dict(query, page=str(page + 1), per_page=str(per_page))
                hdrs["Link"] = f'<{self.url}{parts.path}?{urlencode(q)}>; rel="next"'
            return 200, hdrs, chunk
        ctype = headers.get("content-type", "").split(";")[0]
        if ctype == "application/json":
            data = json.loads(raw or b"{}")
        else:
            data = dict(parse_qsl(raw.decode()))
        body = data.get("body")
        if set(data) - {"body", "created_at", "merge_request_diff_head_sha", "internal"} or not isinstance(body, str) \
                or not body or len(body) > 1_000_000:
            self.problems.append(f"invalid note body in {method} {path}: {sorted(data)}")
            return 400, {}, {"message": "400 Bad request - body is missing or invalid"}
        if method == "POST":
            note = self._new_note(iid, body, "mlgate-bot")
            self._check_note(note, path)
            return 201, {}, note
        for n in self.notes.get(iid, []):
            if n["id"] == int(note_id):
                n["body"] = body
                n["updated_at"] = _now().replace("Z", ".000Z")
                self._check_note(n, path)
                return 200, {}, n
        return 404, {}, {"message": "404 Note Not Found"}
