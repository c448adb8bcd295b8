"""Dependencies of the API's routes, as ``Annotated`` aliases.

What a route needs lives on ``app.state``, put there by ``create_app``: the store, the
daemon's status and readiness callables, the clock, and an ``AppContext`` with the rest.
Routes declare what they need with these aliases.

The getters are ``async def`` although they do not wait for anything: FastAPI runs a
plain ``def`` dependency in its thread pool, a thread hand-off per dependency per
request that cost more than the rest of a cached list request (bench/api_incidents.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from healer.api.cursor import CursorSigner
from healer.api.listing import PageCache, read_threads
from healer.api.overview import TallyCache
from healer.audit.roles import Attention, ReviewQueue
from healer.config import GuardSettings
from healer.decide import Playbook
from healer.types import JsonObject

StatusFn = Callable[[], JsonObject]
ReadinessFn = Callable[[], list[str]]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class AppContext:
    cursors: CursorSigner
    playbooks: Sequence[Playbook]
    models_dir: Path | None
    guards: GuardSettings
    pages: PageCache = field(default_factory=PageCache)
    """Encoded pages of the incident list (``listing.py``)."""
    readers: Executor = field(default_factory=read_threads)
    """The threads that read pages of the incident list not kept (``listing.py``)."""
    tallies: TallyCache = field(default_factory=TallyCache)
    """The overview's tallies of the last day and week (``overview.py``)."""


async def get_store(request: Request) -> ReviewQueue:
    store: ReviewQueue = request.app.state.store  # untyped app.state, set by create_app
    return store


async def get_status(request: Request) -> StatusFn | None:
    status: StatusFn | None = request.app.state.status  # untyped app.state, set by create_app
    return status


async def get_readiness(request: Request) -> ReadinessFn | None:
    readiness: ReadinessFn | None = request.app.state.readiness  # set by create_app
    return readiness


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock  # set by create_app
    return clock


async def get_attention(request: Request) -> Attention | None:
    attention: Attention | None = request.app.state.attention  # set by create_app
    return attention


async def get_context(request: Request) -> AppContext:
    ctx = request.app.state.context
    if not isinstance(ctx, AppContext):
        raise RuntimeError("app.state.context is not an AppContext")
    return ctx


StoreDep = Annotated[ReviewQueue, Depends(get_store)]
StatusDep = Annotated[StatusFn | None, Depends(get_status)]
ReadinessDep = Annotated[ReadinessFn | None, Depends(get_readiness)]
ClockDep = Annotated[Clock, Depends(get_clock)]
ContextDep = Annotated[AppContext, Depends(get_context)]
AttentionDep = Annotated[Attention | None, Depends(get_attention)]
