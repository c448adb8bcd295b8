"""One request to the Kubernetes API through the official client, its errors made ours.

The custom objects and the Lease send their requests alike: bounded by a timeout, a
409, 429 or 5xx answer or an unreachable server a ``TransientActionError`` (retry), any
other refusal a ``PermanentActionError`` (escalate), each message naming what was asked
for. The cause (the client's ``ApiException``) stays chained, so a caller that treats a
status specially (a Lease not created yet: 404) still reads it.

Decisions: the workload actuator (``kube.py``) keeps its own wrapper, since it carries the
status and ``Retry-After`` on its transient error for the retry loop; the policy watch
keeps its own, since 404 and 410 mean things of their own there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from healer.errors import PermanentActionError, TransientActionError

TRANSIENT_STATUSES = frozenset({409, 429, 500, 502, 503, 504})
"""Conflicts, throttling and server-side failures are worth retrying; other 4xx are not."""

Timeout = float | tuple[float, float]
"""Seconds for the whole request, or (to connect, to read the answer), as the client takes."""


def call(
    what: str, method: Callable[..., Any], *args: Any, timeout_s: Timeout, **kwargs: Any
) -> Any:
    """``method(*args, **kwargs)`` within ``timeout_s``; ``what`` (the object asked for)
    begins every error's message. Returns the client's answer (untyped: the caller
    turns it into our values)."""
    try:
        return method(*args, _request_timeout=timeout_s, **kwargs)
    except ApiException as exc:
        message = f"{what}: {exc.status} {exc.reason}: {(exc.body or '')[:300]}"
        if exc.status in TRANSIENT_STATUSES:
            raise TransientActionError(message) from exc
        raise PermanentActionError(message) from exc
    except (HTTPError, OSError) as exc:
        raise TransientActionError(f"{what}: Kubernetes API unreachable: {exc}") from exc
