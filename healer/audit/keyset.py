"""The incident list's query, compiled once per set of filters and run on the driver.

A page of the incident list is a keyset query (``review._listing``): the newest
incidents that match the filters, read from an index, their list entries or summary
columns. It is the one query people send in every shape they can type, and a
query of that shape not seen for a second is read from the database each time.

Decisions:

- Compiled here once per set of filters for the engine's dialect, and run on a bare
  DB-API cursor from the pool. Through a SQLAlchemy ``Connection`` the same read took
  three times the CPU SQLite spends answering it: the connection's bookkeeping, the
  ``begin`` hook's BEGIN and the COMMIT after it, and result rows (bench/api_incidents.py,
  profiled on 100,000 incidents).
- No explicit transaction: one SELECT reads one snapshot on every backend. On SQLite
  (its driver in autocommit, ``database._on_sqlite_connect``) that saves two statements;
  on PostgreSQL the driver opens the transaction and the pool's reset ends it.
- Values are bound with the processors of the types SQLAlchemy gave each parameter
  (the column's: ``UtcDateTime``, the enums), so they are compared in the form stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class _Bind:
    name: str
    process: Callable[[Any], Any] | None
    """The type's bind processor for the dialect; None when the driver takes the value."""
    default: object
    """The value SQLAlchemy bound at build time, used when none is given (OFFSET 0)."""


@dataclass(frozen=True)
class Prepared:
    """A statement as the driver takes it: its SQL text and how to bind its values."""

    sql: str
    binds: tuple[_Bind, ...]
    positional: bool
    """The driver's parameter style: a sequence in ``binds`` order, or a mapping."""

    @classmethod
    def compile(cls, statement: Select[Any], dialect: Dialect) -> Prepared:
        compiled = statement.compile(dialect=dialect)
        defaults = compiled.construct_params(_check=False)
        order = compiled.positiontup if dialect.positional else list(defaults)
        binds = tuple(
            _Bind(name, compiled.binds[name].type.bind_processor(dialect), defaults[name])
            for name in order or ()
        )
        return cls(str(compiled), binds, dialect.positional)

    def parameters(self, values: Mapping[str, object]) -> Sequence[object] | dict[str, object]:
        """The driver's parameters for ``values`` (by bind name)."""
        bound = [
            (name, value if process is None or value is None else process(value))
            for name, process, value in (
                (b.name, b.process, values.get(b.name, b.default)) for b in self.binds
            )
        ]
        if self.positional:
            return [value for _, value in bound]
        return dict(bound)
