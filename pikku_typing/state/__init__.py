"""State stores.

``open_store(url)`` opens a store from a URL: ``memory:``, ``file:DIR``, ``sqlite:PATH``,
``postgres:DSN`` or ``postgresql://...``. The PostgreSQL store is imported lazily (psycopg is
an optional extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from pikku_typing.state.base import DamagedRun, RunChanges, WorkflowStateService, validate_run_id
from pikku_typing.state.file import FileWorkflowStateService
from pikku_typing.state.memory import InMemoryWorkflowStateService
from pikku_typing.state.sqlite import SqliteWorkflowStateService, Synchronous

if TYPE_CHECKING:
    from pikku_typing.state.postgres import PostgresWorkflowStateService

__all__ = [
    "DamagedRun",
    "FileWorkflowStateService",
    "InMemoryWorkflowStateService",
    "PostgresWorkflowStateService",
    "RunChanges",
    "SqliteWorkflowStateService",
    "WorkflowStateService",
    "open_store",
    "validate_run_id",
]

STORE_URL_HELP = (
    "use 'memory:', 'file:DIR', 'sqlite:PATH', 'postgres:DSN' or 'postgresql://...'"
)


def __getattr__(name: str) -> Any:
    if name == "PostgresWorkflowStateService":
        from pikku_typing.state.postgres import PostgresWorkflowStateService

        return PostgresWorkflowStateService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    location, _, query = url.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        name, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"store URL {url!r}: option {item!r} needs a value (name=value)")
        options[name.strip().lower()] = value.strip()
    return location, options


def _no_more_options(url: str, options: dict[str, str]) -> None:
    if options:
        raise ValueError(f"store URL {url!r}: unknown option(s) {', '.join(sorted(options))}")


def _flag(url: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"store URL {url!r}: expected a boolean, got {value!r}")


def _path_part(url: str, scheme: str) -> str:
    rest = url[len(scheme) + 1 :]
    if rest.startswith("//"):  # file:///abs/dir, sqlite:///abs/db
        rest = rest[2:]
    if not rest:
        raise ValueError(f"store URL {url!r} has no path: {STORE_URL_HELP}")
    return rest


def _checked(store: object) -> WorkflowStateService:
    if not isinstance(store, WorkflowStateService):  # pragma: no cover - placeholder
        raise TypeError(f"{type(store).__name__} is not a WorkflowStateService")
    return store


def open_store(url: str) -> WorkflowStateService:
    """Open the state store named by ``url``.

    * ``memory:`` — :class:`InMemoryWorkflowStateService`
    * ``file:DIR`` (or ``file:///abs/dir``) — :class:`FileWorkflowStateService`;
      option ``?fsync=0`` skips fsyncs (tests only)
    * ``sqlite:PATH`` (or ``sqlite:///abs/path.db``) — :class:`SqliteWorkflowStateService`;
      options ``?synchronous=FULL|NORMAL|EXTRA`` (default FULL) and ``busy_timeout=SECONDS``
    * ``postgres:DSN``, ``postgresql:DSN``, ``postgres://...``, ``postgresql://...`` —
      ``PostgresWorkflowStateService`` (needs the ``postgres`` extra)

    Raises ``ValueError`` for any other scheme.
    """
    if not isinstance(url, str):
        raise ValueError(f"store URL must be a string, got {type(url).__name__}: {STORE_URL_HELP}")
    scheme, sep, _ = url.partition(":")
    if not sep:
        raise ValueError(f"store URL {url!r} has no scheme: {STORE_URL_HELP}")
    scheme = scheme.lower()
    if scheme == "memory":
        return InMemoryWorkflowStateService()
    if scheme == "file":
        location, options = _split_options(url)
        fsync = options.pop("fsync", "1")
        _no_more_options(url, options)
        return FileWorkflowStateService(_path_part(location, scheme), fsync=_flag(url, fsync))
    if scheme in ("sqlite", "sqlite3"):
        location, options = _split_options(url)
        synchronous = options.pop("synchronous", "FULL").upper()
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"store URL {url!r}: synchronous must be FULL, NORMAL or EXTRA")
        try:
            busy = float(options.pop("busy_timeout", "30"))
        except ValueError:
            raise ValueError(f"store URL {url!r}: busy_timeout must be seconds") from None
        _no_more_options(url, options)
        return SqliteWorkflowStateService(
            _path_part(location, scheme),
            synchronous=cast(Synchronous, synchronous),
            busy_timeout=busy,
        )
    if scheme in ("postgres", "postgresql"):
        from pikku_typing.state.postgres import PostgresWorkflowStateService

        rest = url[len(scheme) + 1 :]
        dsn = url if rest.startswith("//") else rest
        if not dsn:
            raise ValueError(f"store URL {url!r} has no DSN: {STORE_URL_HELP}")
        return _checked(PostgresWorkflowStateService(dsn))
    raise ValueError(f"unknown state store scheme {scheme!r} in {url!r}: {STORE_URL_HELP}")
