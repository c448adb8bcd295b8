"""The acting lock as two replicas meet it, for the tests of each backend's lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from healer.audit.roles import ActingLock


@contextmanager
def held_against(first: ActingLock, second: ActingLock, *, wait_s: float) -> Iterator[None]:
    """Hold ``first``'s acting lock while ``second`` asks for it on a thread: asserts
    that ``second`` waits ``wait_s`` seconds in vain, then gets it once ``first`` lets
    go. The body runs while ``first`` still holds the lock."""
    entered = threading.Event()

    def take() -> None:
        with second.acting():
            entered.set()

    waiting = threading.Thread(target=take)
    with first.acting():
        waiting.start()
        assert not entered.wait(wait_s), "both held the lock at once"
        yield
    assert entered.wait(30), "the lock was not handed on"
    waiting.join()
