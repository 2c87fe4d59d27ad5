"""State stores.

``open_store(url)`` opens a store from a URL: ``memory:``, ``file:DIR``, ``sqlite:PATH``,
``postgres:DSN`` or ``postgresql://...``. The PostgreSQL store is imported lazily (psycopg is
an optional extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pikku_typing.state.base import RunChanges, WorkflowStateService, validate_run_id
from pikku_typing.state.file import FileWorkflowStateService
from pikku_typing.state.memory import InMemoryWorkflowStateService
from pikku_typing.state.sqlite import SqliteWorkflowStateService

if TYPE_CHECKING:
    from pikku_typing.state.postgres import PostgresWorkflowStateService

__all__ = [
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
    * ``file:DIR`` (or ``file:///abs/dir``) — :class:`FileWorkflowStateService`
    * ``sqlite:PATH`` (or ``sqlite:///abs/path.db``) — :class:`SqliteWorkflowStateService`
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
        return FileWorkflowStateService(_path_part(url, scheme))
    if scheme in ("sqlite", "sqlite3"):
        return SqliteWorkflowStateService(_path_part(url, scheme))
    if scheme in ("postgres", "postgresql"):
        from pikku_typing.state.postgres import PostgresWorkflowStateService

        rest = url[len(scheme) + 1 :]
        dsn = url if rest.startswith("//") else rest
        if not dsn:
            raise ValueError(f"store URL {url!r} has no DSN: {STORE_URL_HELP}")
        return _checked(PostgresWorkflowStateService(dsn))
    raise ValueError(f"unknown state store scheme {scheme!r} in {url!r}: {STORE_URL_HELP}")
