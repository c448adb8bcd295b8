"""Pull requests (GitHub) and merge requests (GitLab): open, read, merge.

The calls used, and nothing else:

- GitHub REST: ``POST /repos/{owner}/{repo}/pulls`` (open), ``GET
  /repos/{owner}/{repo}/pulls?head={owner}:{branch}&state=all`` (find the one of a
  branch), ``GET /repos/{owner}/{repo}/pulls/{number}`` (merged or not), ``PUT
  /repos/{owner}/{repo}/pulls/{number}/merge`` (merge), ``PATCH
  /repos/{owner}/{repo}/pulls/{number}`` with ``{"state": "closed"}`` (close); a bearer
  token.
- GitLab REST v4: ``POST /projects/{id}/merge_requests``, ``GET
  /projects/{id}/merge_requests?source_branch={branch}``, ``GET
  /projects/{id}/merge_requests/{iid}``, ``PUT /projects/{id}/merge_requests/{iid}/merge``,
  ``PUT /projects/{id}/merge_requests/{iid}`` with ``{"state_event": "close"}``; the
  ``PRIVATE-TOKEN`` header; ``{id}`` is the project's path, URL-encoded.

Decisions:

- Plain httpx: four calls per forge do not need a client library, and the same
  transport serves the tests' local server.
- Opening is idempotent: a request already open for the branch (GitHub answers 422,
  GitLab 409) is looked up and returned, not an error.
- Errors are ``PermanentActionError`` naming the call and the forge's message, with the
  token masked; 5xx and timeouts are ``TransientActionError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from healer.errors import PermanentActionError, TransientActionError
from healer.gitops.repo import Redactor

State = Literal["open", "merged", "closed"]
T = TypeVar("T")


@dataclass(frozen=True)
class Review:
    """A pull or merge request: its number (GitLab's iid), its page and its state."""

    number: int
    url: str
    state: State
    branch: str


class Forge(Protocol):
    def open(self, *, head: str, base: str, title: str, body: str) -> Review: ...

    def find(self, head: str) -> Review | None: ...

    def get(self, number: int) -> Review: ...

    def merge(self, number: int) -> Review: ...

    def close(self, number: int) -> Review: ...


def project_of(url: str) -> str:
    """``owner/name`` from a repository URL (https, ssh or scp-like), ``.git`` dropped."""
    path = urlsplit(url).path if "://" in url else url.partition(":")[2]
    return path.strip("/").removesuffix(".git")


class _Http:
    def __init__(self, client: httpx.Client, redact: Redactor) -> None:
        self._client = client
        self._redact = redact

    def call(
        self, verb: str, path: str, *, json: object = None, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request; TransientActionError when the forge cannot be reached or fails."""
        try:
            response = self._client.request(verb, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise TransientActionError(
                self._redact(f"{verb} {path}: forge unreachable: {exc}")
            ) from exc
        if response.status_code >= 500:
            raise TransientActionError(f"{verb} {path}: forge answered {response.status_code}")
        return response

    def expect(
        self,
        verb: str,
        path: str,
        *,
        ok: int = 200,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request the forge must answer with ``ok``; PermanentActionError naming the
        call and the forge's message when it answers anything else below 500."""
        response = self.call(verb, path, json=json, params=params)
        if response.status_code != ok:
            raise self.fail(verb, path, response)
        return response

    def read(
        self,
        verb: str,
        path: str,
        parse: Callable[[Any], T],
        *,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> T:
        """``expect`` a 200 and ``parse`` its JSON body."""
        return self.parse(verb, path, self.expect(verb, path, json=json, params=params), parse)

    def parse(self, verb: str, path: str, response: httpx.Response, parse: Callable[[Any], T]) -> T:
        """``parse`` the body of a successful answer; a body that is not JSON, or JSON
        without the fields used (a proxy's login page, another API behind the URL), is a
        PermanentActionError naming the call, not a crash of the action."""
        try:
            return parse(response.json())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            said = response.text[:200]
            raise PermanentActionError(
                self._redact(
                    f"{verb} {path}: forge answered {response.status_code} with a body that is "
                    f"not the expected JSON ({type(exc).__name__}: {exc}): {said!r}"
                )
            ) from exc

    def create(
        self,
        path: str,
        payload: dict[str, object],
        *,
        conflict: int,
        existing: Callable[[], Review | None],
        review: Callable[[Any], Review],
    ) -> Review:
        """POST a new request, or the one already open for its branch: the forge answers
        ``conflict`` (GitHub 422, GitLab 409) and ``existing`` finds it. Idempotent."""
        response = self.call("POST", path, json=payload)
        if response.status_code == conflict and (found := existing()) is not None:
            return found
        if response.status_code != 201:
            raise self.fail("POST", path, response)
        return self.parse("POST", path, response, review)

    def fail(self, verb: str, path: str, response: httpx.Response) -> PermanentActionError:
        said = response.text[:300]
        return PermanentActionError(
            self._redact(f"{verb} {path}: forge answered {response.status_code}: {said}")
        )


def _client(base_url: str, headers: dict[str, str], timeout_s: float) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)


class GitHub:
    """GitHub's pulls API (github.com or Enterprise's ``/api/v3``)."""

    def __init__(
        self, base_url: str, project: str, token: str | None, *, timeout_s: float,
        redact: Redactor,
    ) -> None:  # fmt: skip
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = _Http(_client(base_url, headers, timeout_s), redact)
        self._repo = f"/repos/{project}"
        self._owner = project.split("/", 1)[0]

    def _review(self, body: dict[str, object]) -> Review:
        merged = bool(body.get("merged") or body.get("merged_at"))
        state: State = "merged" if merged else "open" if body.get("state") == "open" else "closed"
        head = body.get("head")
        branch = str(head.get("ref", "")) if isinstance(head, dict) else ""
        return Review(int(str(body["number"])), str(body.get("html_url", "")), state, branch)

    def open(self, *, head: str, base: str, title: str, body: str) -> Review:
        payload: dict[str, object] = {"title": title, "head": head, "base": base, "body": body}
        return self._http.create(
            f"{self._repo}/pulls",
            payload,
            conflict=422,
            existing=lambda: self.find(head),
            review=self._review,
        )

    def find(self, head: str) -> Review | None:
        params = {"head": f"{self._owner}:{head}", "state": "all"}
        numbers = self._http.read(
            "GET",
            f"{self._repo}/pulls",
            lambda items: [int(i["number"]) for i in items],
            params=params,
        )
        return self.get(numbers[0]) if numbers else None

    def get(self, number: int) -> Review:
        return self._http.read("GET", f"{self._repo}/pulls/{number}", self._review)

    def merge(self, number: int) -> Review:
        merge = f"{self._repo}/pulls/{number}/merge"
        self._http.expect("PUT", merge, json={"merge_method": "merge"})
        return self.get(number)

    def close(self, number: int) -> Review:
        path = f"{self._repo}/pulls/{number}"
        return self._http.read("PATCH", path, self._review, json={"state": "closed"})


class GitLab:
    """GitLab's merge requests API (``/api/v4``)."""

    def __init__(
        self, base_url: str, project: str, token: str | None, *, timeout_s: float,
        redact: Redactor,
    ) -> None:  # fmt: skip
        headers = {"PRIVATE-TOKEN": token} if token else {}
        self._http = _Http(_client(base_url, headers, timeout_s), redact)
        self._project = f"/projects/{quote(project, safe='')}"

    def _review(self, body: dict[str, object]) -> Review:
        raw = body.get("state")
        state: State = "merged" if raw == "merged" else "open" if raw == "opened" else "closed"
        return Review(
            int(str(body["iid"])),
            str(body.get("web_url", "")),
            state,
            str(body.get("source_branch", "")),
        )

    def open(self, *, head: str, base: str, title: str, body: str) -> Review:
        payload: dict[str, object] = {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
        }
        return self._http.create(
            f"{self._project}/merge_requests",
            payload,
            conflict=409,
            existing=lambda: self.find(head),
            review=self._review,
        )

    def find(self, head: str) -> Review | None:
        path = f"{self._project}/merge_requests"
        reviews = self._http.read(
            "GET", path, lambda items: [self._review(i) for i in items[:1]],
            params={"source_branch": head},
        )  # fmt: skip
        return reviews[0] if reviews else None

    def get(self, number: int) -> Review:
        path = f"{self._project}/merge_requests/{number}"
        return self._http.read("GET", path, self._review)

    def merge(self, number: int) -> Review:
        path = f"{self._project}/merge_requests/{number}/merge"
        return self._http.read("PUT", path, self._review)

    def close(self, number: int) -> Review:
        path = f"{self._project}/merge_requests/{number}"
        return self._http.read("PUT", path, self._review, json={"state_event": "close"})
