"""Loading the generated map (``workflow_meta.json``), cached by file identity.

Only what type checking needs is kept (names, input and output types), as plain data: the JSON
is read with ``json`` so that the plugin never pays for building the pydantic models. The layout
is the one of ``pikku_typing.meta.AnalysisReport`` (a test keeps both in step).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pikku_typing.mypy import typestrings
from pikku_typing.mypy.config import PluginConfig

SUPPORTED_VERSION: Final = 1
"""``AnalysisReport.version`` this plugin reads."""
READABLE_VERSIONS: Final = (SUPPORTED_VERSION, 2)
"""Also ``workflow_meta.json`` version 2 (``META_VERSION``: the same layout plus a ``types``
table, which the plugin does not need)."""


@dataclass(frozen=True)
class Signature:
    """An RPC's or a workflow's name with its input and output type expressions."""

    name: str
    input_type: str | None
    output_type: str | None


@dataclass(frozen=True)
class WorkflowMap:
    path: Path
    rpcs: Mapping[str, Signature]
    workflows: Mapping[str, Signature]
    digest: str
    """Hash of the part of the map that type checking depends on (not of line numbers)."""
    type_names: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """RPC, workflow or event name -> the dotted names used in its type expressions."""
    events: Mapping[str, Signature] = field(default_factory=dict)
    """Events (``wire_event``): the payload type is the ``input_type``."""


@dataclass(frozen=True)
class Loaded:
    """The outcome of one look at the map: the map, or a problem phrased for the user."""

    map: WorkflowMap | None
    problem: str | None
    digest: str


class MetaStore:
    """Reads the map when its file changed (``stat`` identity), else returns the cached one."""

    def __init__(self, config: PluginConfig) -> None:
        self.config = config
        self._key: tuple[int, int, int] | None = None
        self._loaded: Loaded | None = None

    def get(self) -> Loaded:
        path = self.config.meta_path
        if self.config.problem is not None or path is None:
            return self._remember(None, self._missing_config_problem())
        try:
            st = os.stat(path)
        except OSError:
            return self._remember(
                None,
                f'pikku: the workflow map "{_display(path)}" does not exist yet; run pikku-analyze to '
                "generate it (RPC and workflow names are not checked until then)",
            )
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._loaded is not None and self._key == key:
            return self._loaded
        self._key = key
        try:
            map_ = _parse(path, path.read_bytes())
            self._loaded = Loaded(map_, None, map_.digest)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._loaded = Loaded(
                None,
                f'pikku: the workflow map "{_display(path)}" cannot be read ({exc}); run pikku-analyze to '
                "regenerate it (RPC and workflow names are not checked until then)",
                "invalid",
            )
        return self._loaded

    def _remember(self, map_: WorkflowMap | None, problem: str) -> Loaded:
        self._key = None
        self._loaded = None
        return Loaded(map_, problem, "missing")

    def _missing_config_problem(self) -> str:
        if self.config.problem is not None:
            return f"pikku: {self.config.problem}; RPC and workflow names are not checked"
        return (
            "pikku: no pyproject.toml with a [tool.pikku] section was found (searched from "
            "mypy's config file and the current directory); add one and run pikku-analyze "
            "to generate the workflow map (RPC and workflow names are not checked until then)"
        )


def _display(path: Path) -> str:
    """``path`` relative to the current directory when it is below it (as mypy shows files)."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def _parse(path: Path, raw: bytes) -> WorkflowMap:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        readable = " and ".join(str(v) for v in READABLE_VERSIONS)
        raise ValueError(f"version {version!r}, this plugin reads versions {readable}")
    rpcs = _signatures(data.get("rpcs", []), "rpcs")
    workflows = _signatures(data.get("workflows", []), "workflows")
    events = _signatures(data.get("events", []), "events", input_key="payload_type")
    projection = {
        "path": str(path),
        "rpcs": [[s.name, s.input_type, s.output_type] for s in rpcs.values()],
        "workflows": [[s.name, s.input_type, s.output_type] for s in workflows.values()],
        "events": [[s.name, s.input_type] for s in events.values()],
    }
    digest = hashlib.sha256(json.dumps(projection, sort_keys=True).encode()).hexdigest()[:32]
    type_names: dict[str, frozenset[str]] = {}
    for sig in (*rpcs.values(), *workflows.values(), *events.values()):
        names: set[str] = set(type_names.get(sig.name, ()))
        for type_str in (sig.input_type, sig.output_type):
            if type_str is not None:
                names.update(typestrings.dotted_names(type_str))
        type_names[sig.name] = frozenset(names)
    return WorkflowMap(path, rpcs, workflows, digest, type_names, events)


def _signatures(items: object, what: str, input_key: str = "input_type") -> dict[str, Signature]:
    if not isinstance(items, list):
        raise ValueError(f'"{what}" is not a list')
    result: dict[str, Signature] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f'an entry of "{what}" has no "name"')
        sig = Signature(
            item["name"], _opt_str(item.get(input_key)), _opt_str(item.get("output_type"))
        )
        result.setdefault(sig.name, sig)
    return dict(sorted(result.items()))


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
