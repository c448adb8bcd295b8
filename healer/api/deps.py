"""Dependencies of the API's routes, as ``Annotated`` aliases.

The store and the daemon's status callable live on ``app.state``, put there by
``create_app``; routes declare what they need with these aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from healer.audit import AuditStore
from healer.types import JsonObject

StatusFn = Callable[[], JsonObject]


def get_store(request: Request) -> AuditStore:
    store = request.app.state.store
    if not isinstance(store, AuditStore):  # app.state is untyped: check once here
        raise RuntimeError("app.state.store is not an AuditStore")
    return store


def get_status(request: Request) -> StatusFn | None:
    status: StatusFn | None = request.app.state.status  # untyped app.state, set by create_app
    return status


StoreDep = Annotated[AuditStore, Depends(get_store)]
StatusDep = Annotated[StatusFn | None, Depends(get_status)]


ReadinessFn = Callable[[], list[str]]


def get_readiness(request: Request) -> ReadinessFn | None:
    readiness: ReadinessFn | None = request.app.state.readiness  # set by create_app
    return readiness


ReadinessDep = Annotated[ReadinessFn | None, Depends(get_readiness)]
