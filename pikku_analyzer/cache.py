"""Per-file facts cached by content hash under ``<root>/.pikku/cache/``.

One JSON file per entry, named by a hash of (analyzer version, facts version, generated
package name, module name, path, file bytes). Entries are written atomically (a unique
temporary file, then ``os.replace``), so concurrent runs never see half-written files;
an unreadable or corrupt entry is a miss and is rewritten. Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pikku_analyzer.detect import extract
from pikku_analyzer.detect.extract import FACTS_VERSION

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
        self.hits = 0
        self.misses = 0
        self.write_errors = 0
        self._created = False

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        path = self.directory / key[:2] / f"{key}.json"
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
        except (OSError, ValueError, RecursionError):
            self.misses += 1
            return None
        if not isinstance(data, dict) or data.get("v") != FACTS_VERSION or "module" not in data:
            self.misses += 1
            return None
        self.hits += 1
        return data

    def put(self, key: str, facts: dict[str, Any]) -> None:
        if not self.enabled or self.read_only:
            return
        folder = self.directory / key[:2]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not self._created:
                self._created = True
                ignore = self.directory.parent / ".gitignore"
                if not ignore.exists():
                    _atomic_write(ignore, b"# created by pikku-analyze\n*\n")
            payload = json.dumps(facts, separators=(",", ":"), ensure_ascii=False)
            _atomic_write(folder / f"{key}.json", payload.encode("utf-8", "surrogatepass"))
        except (OSError, ValueError, TypeError, RecursionError):
            self.write_errors += 1  # a cache that cannot be written only costs speed

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


def _atomic_write(path: Path, data: bytes) -> None:
    import tempfile  # only when writing: keeps a warm run's imports small

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
