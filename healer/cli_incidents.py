"""`healer incidents list|show|approve|reject`: the review API from the command line.

Talks to a running healer's API over HTTP (httpx), as any client would: the URL and token
come from options or ``HEALER_URL`` and ``HEALER_TOKEN``. An HTTP error ends the command
with the API's own message (which names the field, id or cursor at fault) and exit code 2.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from healer.errors import HealerError

incidents_app = typer.Typer(no_args_is_help=True, help="Review incidents through the API.")

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="HEALER_URL", help="Base URL of the healer API.")
]
TokenOpt = Annotated[str, typer.Option("--token", envvar="HEALER_TOKEN", help="API bearer token.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 10.0
"""Per request: the API answers in milliseconds; ten seconds means it is not there."""


def _call(method: str, url: str, token: str, path: str, **kwargs: Any) -> Any:
    # Any: the API's JSON, shaped by its OpenAPI schema and printed as is.
    try:
        response = httpx.request(
            method,
            f"{url.rstrip('/')}/api/v1{path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_S,
            **kwargs,
        )
    except httpx.HTTPError as exc:
        raise HealerError(f"{method} {url}{path}: {exc}") from exc
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise HealerError(f"{method} /api/v1{path}: {response.status_code} {detail}")
    return response.json()


@incidents_app.command("list")
def list_(
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    status: Annotated[
        str | None, typer.Option(help="open, verifying, pending_approval, resolved.")
    ] = None,
    namespace: Annotated[str | None, typer.Option()] = None,
    workload: Annotated[str | None, typer.Option()] = None,
    cause: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 time with offset.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 time with offset.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of a previous page.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Incidents, newest first; one line each."""
    given = {
        "status": status, "namespace": namespace, "workload": workload, "cause": cause,
        "since": since, "until": until, "cursor": cursor,
    }  # fmt: skip
    params = {k: v for k, v in given.items() if v is not None}
    page = _call("GET", url, token, "/incidents", params={**params, "limit": limit})
    if json_out:
        typer.echo(json.dumps(page, indent=2))
        return
    for item in page["items"]:
        wl = item["workload"]
        action = f"{item['action'] or '-'} {item['action_status'] or ''} {item['outcome'] or ''}"
        typer.echo(
            f"#{item['id']:<6} {item['opened'][:19]}  {wl['namespace']}/{wl['name']:<20} "
            f"{item['status']:<16} {item['cause'] or '-':<12} {action}".rstrip()
        )
    if page["next_cursor"]:
        typer.echo(f"more: --cursor {page['next_cursor']}")


@incidents_app.command("show")
def show(
    incident_id: Annotated[int, typer.Argument(min=1)],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """One incident's timeline, and its actions with their ids."""
    detail = _call("GET", url, token, f"/incidents/{incident_id}")
    if json_out:
        typer.echo(json.dumps(detail, indent=2))
        return
    wl = detail["workload"]
    typer.echo(f"#{detail['id']} {wl['namespace']}/{wl['name']}: {detail['status']}")
    for step in detail["timeline"]:
        typer.echo(f"  {step['at'][:19]}  {step['kind']:<9} {_step_text(step['data'])}")
    for action in detail["actions"]:
        typer.echo(f"  action {action['id']}: {action['kind']} {action['status']}")


def _step_text(data: dict[str, Any]) -> str:
    for keys in (("cause", "explanation"), ("playbook", "reason"), ("kind", "status"),
                 ("decision", "reason"), ("kind", "evidence"), ("verdict", "note")):  # fmt: skip
        if all(k in data for k in keys):
            return ": ".join(str(data[k]) for k in keys)
    return f"score {data.get('score', '')}"


@incidents_app.command("approve")
def approve(
    action_id: Annotated[int, typer.Argument(min=1)],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
    reason: Annotated[str, typer.Option(help="Why; kept in the timeline.")] = "",
) -> None:
    """Approve a pending action; the daemon takes it on its next cycle, guards permitting."""
    action = _call("POST", url, token, f"/actions/{action_id}/approve", json={"reason": reason})
    typer.echo(f"action {action['id']} ({action['kind']}) {action['status']}")


@incidents_app.command("reject")
def reject(
    action_id: Annotated[int, typer.Argument(min=1)],
    reason: Annotated[str, typer.Option(help="Why not (required).")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
) -> None:
    """Reject a pending action: it is never taken and its incident is escalated."""
    action = _call("POST", url, token, f"/actions/{action_id}/reject", json={"reason": reason})
    typer.echo(f"action {action['id']} ({action['kind']}) {action['status']}")
