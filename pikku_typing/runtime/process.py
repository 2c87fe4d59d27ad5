"""Who holds a claim, and whether that holder is still alive.

Every claim (a run's orchestrator pass, a step attempt) records a :class:`ClaimOwner`:
the host name (``socket.gethostname()``), the process id and a token unique per claim.
The token starts with the holder process's *start time* (``/proc/<pid>/stat`` field 22,
when available), so a pid reused by another process is not mistaken for the holder.

:func:`holder_liveness` answers ``"alive"``, ``"dead"`` or ``"unknown"`` (another host:
only its lease can tell).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Final, Literal

from pikku_typing.errors import StoreUnavailableError
from pikku_typing.models import ClaimOwner

Liveness = Literal["alive", "dead", "unknown"]

_NO_START: Final = "x"

_active_tokens: set[str] = set()
"""Tokens of the claims this process currently holds (its running passes and attempts)."""

_outage_tokens: dict[str, None] = {}
"""Tokens of claims this process gave up because the store failed under them (oldest first,
at most :data:`_MAX_OUTAGE_TOKENS`): see :func:`mark_outage`."""

_MAX_OUTAGE_TOKENS: Final = 10_000


@cache
def hostname() -> str:
    return socket.gethostname()


def process_start_time(pid: int) -> str | None:
    """The start time (clock ticks since boot) of process ``pid``, or ``None`` when unknown
    (no ``/proc``, or no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = raw[raw.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state); the start time is field 22.
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0] if fields else None


_pid_at_import: int = -1
_start_at_import: str = _NO_START


def _my_start() -> str:
    global _pid_at_import, _start_at_import
    pid = os.getpid()
    if pid != _pid_at_import:  # first call, or we are a forked child
        _pid_at_import = pid
        _start_at_import = process_start_time(pid) or _NO_START
    return _start_at_import


def new_token() -> str:
    """A claim token: ``<process start time>.<random hex>``."""
    return f"{_my_start()}.{uuid.uuid4().hex}"


def new_owner() -> ClaimOwner:
    """A :class:`ClaimOwner` for a new claim held by this process (not yet marked active)."""
    return ClaimOwner(host=hostname(), pid=os.getpid(), token=new_token())


def mark_active(token: str) -> None:
    _active_tokens.add(token)


def mark_inactive(token: str) -> None:
    _active_tokens.discard(token)


@contextlib.contextmanager
def holding(token: str) -> Iterator[None]:
    """While the block runs, this process holds the claim ``token`` (:func:`mark_active`);
    when the block ends it no longer does, and when it ends with
    :class:`~pikku_typing.errors.StoreUnavailableError` the claim was cut short by the store
    (:func:`mark_outage`). Every pass and every attempt holds its claim this way."""
    _active_tokens.add(token)
    try:
        yield
    except StoreUnavailableError:
        mark_outage(token)
        raise
    finally:
        _active_tokens.discard(token)


def mark_outage(token: str) -> None:
    """The claim ``token`` of this process ended because a store call failed under it
    (:class:`~pikku_typing.errors.StoreUnavailableError`): its attempt, left ``running`` in
    the store, was cut short by the infrastructure, not by the step or a crash. Whoever
    abandons it in this process knows (:func:`ended_by_outage`) and does not count it
    against the step's retries. Another process cannot know: it counts it, as a crash."""
    _outage_tokens[token] = None
    if len(_outage_tokens) > _MAX_OUTAGE_TOKENS:
        del _outage_tokens[next(iter(_outage_tokens))]


def ended_by_outage(owner: ClaimOwner) -> bool:
    """Did this process give up the claim of ``owner`` because the store failed?"""
    return is_same_process(owner) and owner.token in _outage_tokens


def forget_outage(token: str) -> None:
    _outage_tokens.pop(token, None)


def _token_start(token: str) -> str | None:
    head, sep, _ = token.partition(".")
    if not sep or head == _NO_START:
        return None
    return head


def holder_liveness(owner: ClaimOwner) -> Liveness:
    """Is the process that holds this claim alive?

    * another host: ``"unknown"`` (the lease decides);
    * this process: alive only while it still holds the token (a crashed task that left a
      claim behind is dead);
    * another process of this host: ``os.kill(pid, 0)``, then its start time against the
      one in the token (pid reuse), and zombies count as dead.
    """
    if owner.host != hostname():
        return "unknown"
    if owner.pid == os.getpid():
        start = _token_start(owner.token)
        if start is not None and start != _my_start():
            return "dead"  # an earlier process with our pid
        return "alive" if owner.token in _active_tokens else "dead"
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return "unknown"
    if _process_state(owner.pid) == "Z":
        return "dead"
    start = _token_start(owner.token)
    if start is not None:
        current = process_start_time(owner.pid)
        if current is not None and current != start:
            return "dead"  # the pid was reused
    return "alive"


def is_same_process(owner: ClaimOwner | None) -> bool:
    return (
        owner is not None
        and owner.host == hostname()
        and owner.pid == os.getpid()
        and _token_start(owner.token) in (None, _my_start())
    )
