"""A local forge that follows the GitHub and GitLab REST contracts for the calls healer
makes, over real HTTP, backed by a real bare repository.

GitHub (REST v3, ``Authorization: Bearer``):
  POST /repos/{owner}/{repo}/pulls              201 the pull; 422 when one is open for head
  GET  /repos/{owner}/{repo}/pulls?head=o:b&state=all   200 a list
  GET  /repos/{owner}/{repo}/pulls/{number}     200 the pull (``merged``, ``state``)
  PUT  /repos/{owner}/{repo}/pulls/{number}/merge       200 ``{"merged": true}``; 405 not open
  PATCH /repos/{owner}/{repo}/pulls/{number}    ``{"state": "closed"}``: 200 the closed pull
GitLab (REST v4, ``PRIVATE-TOKEN``; the project id is its URL-encoded path):
  POST /projects/{id}/merge_requests            201 the MR; 409 when one is open for the branch
  GET  /projects/{id}/merge_requests?source_branch=b    200 a list
  GET  /projects/{id}/merge_requests/{iid}      200 the MR (``state`` opened/merged/closed)
  PUT  /projects/{id}/merge_requests/{iid}/merge        200 the merged MR; 405 not open
  PUT  /projects/{id}/merge_requests/{iid}      ``{"state_event": "close"}``: 200 the closed MR

A merge really merges the branch into the base in the bare repository (``git merge
--no-ff`` in a scratch clone, pushed), so that what healer's clone fetches afterwards is
what a forge would leave.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.unit.gitops.gitrepos import git

TOKEN = "forge-token-42"


@dataclass
class Forge:
    remote: Path
    scratch: Path
    kind: str
    requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def branch_exists(self, name: str) -> bool:
        return bool(git(self.remote, "branch", "--list", name).strip())

    def merge(self, head: str, base: str) -> str:
        work = self.scratch / f"merge-{len(self.calls)}"
        git(self.scratch, "clone", "--quiet", "--branch", base, str(self.remote), work.name)
        git(work, "merge", "--no-ff", "--quiet", "-m", f"Merge {head}", f"origin/{head}")
        git(work, "push", "--quiet", "origin", base)
        return git(work, "rev-parse", "HEAD").strip()

    def merge_in_the_forge(self, number: int) -> None:
        """A person presses the merge button."""
        pr = self.requests[number]
        self.merge(pr["head"], pr["base"])
        pr["state"] = "merged"


def _handler(forge: Forge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}") if length else {}

        def _authorized(self) -> bool:
            if forge.kind == "github":
                return self.headers.get("Authorization") == f"Bearer {TOKEN}"
            return self.headers.get("PRIVATE-TOKEN") == TOKEN

        def _route(self, verb: str) -> None:
            url = urlsplit(self.path)
            forge.calls.append(f"{verb} {url.path}")
            if not self._authorized():
                self._reply(401, {"message": "Bad credentials"})
                return
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if forge.kind == "github":
                self._github(verb, url.path, query)
            else:
                self._gitlab(verb, url.path, query)

        def do_GET(self) -> None:  # http.server's names
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        # ---- GitHub ----------------------------------------------------------------------

        def _pull(self, pr: dict[str, Any]) -> dict[str, Any]:
            return {
                "number": pr["number"],
                "html_url": f"https://github.example/shop/deploy/pull/{pr['number']}",
                "state": "open" if pr["state"] == "open" else "closed",
                "merged": pr["state"] == "merged",
                "head": {"ref": pr["head"]},
                "base": {"ref": pr["base"]},
                "title": pr["title"],
                "body": pr["body"],
            }

        def _github(self, verb: str, path: str, query: dict[str, str]) -> None:
            m = re.fullmatch(r"/repos/shop/deploy/pulls(?:/(\d+))?(/merge)?", path)
            if m is None:
                self._reply(404, {"message": "Not Found"})
                return
            number = int(m.group(1)) if m.group(1) else None
            if verb == "POST" and number is None:
                body = self._body()
                if not all(body.get(k) for k in ("title", "head", "base")):
                    self._reply(422, {"message": "Validation Failed"})
                    return
                if not forge.branch_exists(body["head"]):
                    self._reply(
                        422, {"message": "Validation Failed", "errors": [{"field": "head"}]}
                    )
                    return
                if any(
                    p["head"] == body["head"] and p["state"] == "open"
                    for p in forge.requests.values()
                ):
                    self._reply(
                        422, {"message": "A pull request already exists for shop:" + body["head"]}
                    )
                    return
                pr = {
                    "number": len(forge.requests) + 1,
                    "state": "open",
                    **{k: body.get(k) for k in ("title", "head", "base", "body")},
                }
                forge.requests[pr["number"]] = pr
                self._reply(201, self._pull(pr))
            elif verb == "GET" and number is None:
                owner, _, head = query.get("head", "").partition(":")
                found = [
                    self._pull(p)
                    for p in forge.requests.values()
                    if owner == "shop" and p["head"] == head
                ]
                self._reply(200, found)
            elif verb == "GET" and number in forge.requests and not m.group(2):
                self._reply(200, self._pull(forge.requests[number]))
            elif verb == "PATCH" and number in forge.requests and not m.group(2):
                pr = forge.requests[number]
                if self._body().get("state") == "closed" and pr["state"] == "open":
                    pr["state"] = "closed"
                self._reply(200, self._pull(pr))
            elif verb == "PUT" and number in forge.requests and m.group(2):
                pr = forge.requests[number]
                if pr["state"] != "open":
                    self._reply(405, {"message": "Pull Request is not mergeable"})
                    return
                sha = forge.merge(pr["head"], pr["base"])
                pr["state"] = "merged"
                self._reply(
                    200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
                )
            else:
                self._reply(404, {"message": "Not Found"})

        # ---- GitLab ----------------------------------------------------------------------

        def _mr(self, pr: dict[str, Any]) -> dict[str, Any]:
            return {
                "iid": pr["number"],
                "web_url": f"https://gitlab.example/shop/deploy/-/merge_requests/{pr['number']}",
                "state": {"open": "opened"}.get(pr["state"], pr["state"]),
                "source_branch": pr["head"],
                "target_branch": pr["base"],
                "title": pr["title"],
                "description": pr["body"],
            }

        def _gitlab(self, verb: str, path: str, query: dict[str, str]) -> None:
            prefix = "/api/v4/projects/"
            raw = self.path.split("?")[0]
            if not raw.startswith(prefix + "shop%2Fdeploy/merge_requests"):
                self._reply(404, {"message": "404 Project Not Found"})
                return
            rest = unquote(raw[len(prefix) :]).removeprefix("shop/deploy/merge_requests")
            m = re.fullmatch(r"(?:/(\d+))?(/merge)?", rest)
            number = int(m.group(1)) if m and m.group(1) else None
            if m is None:
                self._reply(404, {"message": "404 Not found"})
            elif verb == "POST" and number is None:
                body = self._body()
                if not all(body.get(k) for k in ("source_branch", "target_branch", "title")):
                    self._reply(400, {"message": "title is missing"})
                    return
                if any(
                    p["head"] == body["source_branch"] and p["state"] == "open"
                    for p in forge.requests.values()
                ):
                    self._reply(
                        409,
                        {
                            "message": [
                                "Another open merge request already exists for this source branch"
                            ]
                        },
                    )
                    return
                pr = {
                    "number": len(forge.requests) + 1,
                    "state": "open",
                    "head": body["source_branch"],
                    "base": body["target_branch"],
                    "title": body["title"],
                    "body": body.get("description"),
                }
                forge.requests[pr["number"]] = pr
                self._reply(201, self._mr(pr))
            elif verb == "GET" and number is None:
                found = [
                    self._mr(p)
                    for p in forge.requests.values()
                    if p["head"] == query.get("source_branch")
                ]
                self._reply(200, found)
            elif verb == "GET" and number in forge.requests and not m.group(2):
                self._reply(200, self._mr(forge.requests[number]))
            elif verb == "PUT" and number in forge.requests and not m.group(2):
                pr = forge.requests[number]
                if self._body().get("state_event") == "close" and pr["state"] == "open":
                    pr["state"] = "closed"
                self._reply(200, self._mr(pr))
            elif verb == "PUT" and number in forge.requests and m.group(2):
                pr = forge.requests[number]
                if pr["state"] != "open":
                    self._reply(405, {"message": "405 Method Not Allowed"})
                    return
                forge.merge(pr["head"], pr["base"])
                pr["state"] = "merged"
                self._reply(200, self._mr(pr))
            else:
                self._reply(404, {"message": "404 Not found"})

    return Handler


@contextmanager
def serve(forge: Forge) -> Iterator[str]:
    """The forge on a free loopback port; its API root."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(forge))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        root = "" if forge.kind == "github" else "/api/v4"
        yield f"http://127.0.0.1:{server.server_address[1]}{root}"
    finally:
        server.shutdown()
        server.server_close()
