"""Per-file facts cached by content hash under ``<root>/.pikku/cache/``.

One JSON file per entry, named by a hash of (analyzer version, facts version, generated
package name, module name, path, file bytes). Entries are written atomically (a unique
temporary file, then ``os.replace``), so concurrent runs never see half-written files;
an unreadable or corrupt entry is a miss and is rewritten. Nothing is ever unpickled.

Files that do not mention pikku are only syntax-checked; that they parse is remembered in
ONE compact index, ``<root>/.pikku/cache/syntax-ok.bin`` (:class:`SyntaxIndex`): a header
(magic, then a digest of the analyzer and Python versions, since what parses depends on
the Python version), then 16-byte content digests, one per file known to parse. It is
rewritten atomically, merged with what a concurrent run wrote meanwhile, and a corrupt or
foreign file is ignored (every file is then checked again). A file that does not parse
is cached as facts (with its ``syntax_error``), like any other.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import cast

from pikku_analyzer.detect import extract
from pikku_analyzer.facts import FACTS_VERSION, FileFacts

ANALYZER_VERSION = "0.1.0"
PRUNE_AFTER_SECONDS = 14 * 24 * 3600


def _code_salt() -> str:
    """A digest of the extractor's own source: a changed analyzer never reuses old facts."""
    try:
        return hashlib.blake2b(Path(extract.__file__).read_bytes(), digest_size=8).hexdigest()
    except OSError:
        return "unknown"


_CODE_SALT = _code_salt()


def cache_key(source: bytes, *, module: str, rel: str, is_package: bool, package: str) -> str:
    digest = hashlib.blake2b(digest_size=20)
    header = (
        f"{ANALYZER_VERSION}\0{FACTS_VERSION}\0{_CODE_SALT}\0{package}\0{module}\0{rel}\0"
        f"{int(is_package)}\0"
    )
    digest.update(header.encode("utf-8", "surrogateescape"))
    digest.update(source)
    return digest.hexdigest()


class FactsCache:
    """A directory of ``<key>.json`` entries (``<root>/.pikku/cache/facts``)."""

    def __init__(self, directory: Path, *, enabled: bool = True, read_only: bool = False) -> None:
        self.directory = directory
        self.enabled = enabled
        self.read_only = read_only
        self._created = False

    def get(self, key: str) -> FileFacts | None:
        if not self.enabled:
            return None
        path = self.directory / key[:2] / f"{key}.json"
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get("v") != FACTS_VERSION or "module" not in data:
            return None
        return cast("FileFacts", data)  # written by put() with this FACTS_VERSION

    def put(self, key: str, facts: FileFacts) -> None:
        if not self.enabled or self.read_only:
            return
        folder = self.directory / key[:2]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not self._created:
                self._created = True
                _ensure_gitignore(self.directory.parent)
            payload = json.dumps(facts, separators=(",", ":"), ensure_ascii=False)
            _atomic_write(folder / f"{key}.json", payload.encode("utf-8", "surrogatepass"))
        except (OSError, ValueError, TypeError, RecursionError):
            pass  # a cache that cannot be written only costs speed

    def prune(self, used: set[str], *, now: float | None = None) -> int:
        """Delete entries not used by this run and older than two weeks; returns the count."""
        if not self.enabled or self.read_only or not self.directory.is_dir():
            return 0
        limit = (now or time.time()) - PRUNE_AFTER_SECONDS
        removed = 0
        try:
            for folder in self.directory.iterdir():
                if not folder.is_dir():
                    continue
                for entry in folder.iterdir():
                    if entry.stem in used:
                        continue
                    try:
                        if entry.stat().st_mtime < limit:
                            entry.unlink()
                            removed += 1
                    except OSError:
                        continue
        except OSError:
            return removed
        return removed


SYNTAX_INDEX_NAME = "syntax-ok.bin"
SYNTAX_CHECK_VERSION = 1
_INDEX_MAGIC = b"pikku-syntax-ok\n"
DIGEST_SIZE = 16
_HEADER_SIZE = len(_INDEX_MAGIC) + DIGEST_SIZE
KEEP_UNUSED_MIN = 4096
"""Digests not seen by a run are kept (other branches, other checkouts) up to
``max(KEEP_UNUSED_MIN, digests seen)``; beyond that the index is trimmed when it is written."""


def _index_salt() -> bytes:
    impl = sys.implementation
    text = (
        f"{ANALYZER_VERSION}\0{SYNTAX_CHECK_VERSION}\0{impl.name}\0"
        f"{impl.version.major}.{impl.version.minor}"
    )
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_SIZE).digest()


_INDEX_HEADER = _INDEX_MAGIC + _index_salt()


def content_digest(source: bytes) -> bytes:
    """The 16-byte digest of a file's bytes (the :class:`SyntaxIndex` entry)."""
    return hashlib.blake2b(source, digest_size=DIGEST_SIZE).digest()


def _read_index(path: Path) -> set[bytes] | None:
    """The digests of a valid index file, or None (missing, unreadable, corrupt, foreign)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if not data.startswith(_INDEX_HEADER) or (len(data) - _HEADER_SIZE) % DIGEST_SIZE:
        return None
    return {data[i : i + DIGEST_SIZE] for i in range(_HEADER_SIZE, len(data), DIGEST_SIZE)}


class SyntaxIndex:
    """Content digests of the files known to parse (``<root>/.pikku/cache/syntax-ok.bin``).

    :meth:`known` answers (and records the digest as used by this run); :meth:`add` records
    a file just checked; :meth:`save` writes the index once, at the end of a run."""

    def __init__(self, path: Path, *, enabled: bool = True, read_only: bool = False) -> None:
        self.path = path
        self.enabled = enabled
        self.read_only = read_only
        self._used: set[bytes] = set()
        self._new: set[bytes] = set()
        known = _read_index(path) if enabled else None
        self.loaded = known is not None
        """Whether a valid index was read (when not, no file is known to parse or fail)."""
        self._known: set[bytes] = known or set()

    def known(self, digest: bytes) -> bool:
        """Whether the file of this content digest is known to parse."""
        if digest in self._known or digest in self._new:
            self._used.add(digest)
            return True
        return False

    def __len__(self) -> int:
        return len(self._known | self._new)

    def add(self, digest: bytes) -> None:
        self._new.add(digest)
        self._used.add(digest)

    def save(self, *, checked: bool = False) -> bool:
        """Write the index when this run learnt something (or ``checked`` files and there
        was no valid index: the next run then knows that no file is known to parse); returns
        whether it was written. Entries another run wrote since this one read it are kept."""
        if not self.enabled or self.read_only or not (self._new or (checked and not self.loaded)):
            return False
        on_disk = _read_index(self.path) or set()
        unused = (self._known | on_disk) - self._used
        keep = max(KEEP_UNUSED_MIN, len(self._used))
        if len(unused) > keep:
            unused = set(sorted(unused)[:keep])
        payload = b"".join(sorted(self._used)) + b"".join(sorted(unused))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _ensure_gitignore(self.path.parent)
            _atomic_write(self.path, _INDEX_HEADER + payload)
        except OSError:  # a cache that cannot be written only costs speed
            return False
        self._known |= self._new
        self._new = set()
        self.loaded = True
        return True


def _ensure_gitignore(directory: Path) -> None:
    ignore = directory / ".gitignore"
    if not ignore.exists():
        _atomic_write(ignore, b"# created by pikku-analyze\n*\n")


def _atomic_write(path: Path, data: bytes) -> None:
    from pikku_typing._fs import (
        atomic_write_bytes,  # only when writing: a warm run's imports stay small
    )

    atomic_write_bytes(path, data)
