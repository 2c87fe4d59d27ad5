"""Where the generated workflow map is: ``[tool.pikku]`` found from mypy's config file or the cwd.

``[tool.pikku]`` is parsed here with ``tomllib`` (``pikku_typing`` does not depend on the analyzer):
the map is ``<root>/<out_dir>/<package>/workflow_meta.json``, ``root`` being the directory of the
``pyproject.toml`` that has the section. The search order:

1. an ini-style mypy config (``mypy.ini``, ``setup.cfg``) may name the project explicitly::

       [mypy.plugins.pikku]
       pyproject = path/to/pyproject.toml     ; or its directory
       meta = path/to/workflow_meta.json      ; or the map itself

   (relative paths are relative to the config file);
2. the ``pyproject.toml`` that is mypy's config file, when it has ``[tool.pikku]``;
3. the first ``pyproject.toml`` with ``[tool.pikku]`` in the config file's directory or above it,
   then in the current directory or above it (stopping at a repository root).
"""

from __future__ import annotations

import configparser
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mypy.options import Options

META_FILE: Final = "workflow_meta.json"
DEFAULT_PACKAGE: Final = "pikku_gen"
INI_SECTION: Final = "mypy.plugins.pikku"
_REPO_MARKERS: Final = (".git", ".hg")


@dataclass(frozen=True)
class PluginConfig:
    """The resolved location of the map (every path absolute)."""

    meta_path: Path | None
    """Where ``workflow_meta.json`` is expected (None: no ``[tool.pikku]`` was found)."""
    root: Path | None
    """The project root (directory of the ``pyproject.toml`` with ``[tool.pikku]``)."""
    package: str
    """The generated package's name."""
    search_dirs: tuple[Path, ...]
    """Directories in which the modules named by the map are looked for."""
    problem: str | None = None
    """Why no map can be used, already phrased for the user (None: nothing wrong)."""
    src: tuple[Path, ...] = ()
    """The analysed source directories (``[tool.pikku] src``): where a name missing from the map
    may be defined (the map is then stale)."""


def load_config(options: Options) -> PluginConfig:
    """Find ``[tool.pikku]`` for this mypy run; never raises."""
    config_file = Path(options.config_file).resolve() if options.config_file else None
    try:
        return _load(options, config_file)
    except (OSError, ValueError, tomllib.TOMLDecodeError, configparser.Error) as exc:
        return PluginConfig(
            meta_path=None,
            root=None,
            package=DEFAULT_PACKAGE,
            search_dirs=_search_dirs(options, None, []),
            problem=f"the [tool.pikku] configuration could not be read ({exc})",
        )


def _load(options: Options, config_file: Path | None) -> PluginConfig:
    explicit_meta: Path | None = None
    pyproject: Path | None = None
    if config_file is not None and config_file.suffix != ".toml" and config_file.is_file():
        explicit_meta, pyproject = _ini_settings(config_file)
    if (
        pyproject is None
        and config_file is not None
        and config_file.suffix == ".toml"
        and _pikku_section(config_file) is not None
    ):
        pyproject = config_file
    if pyproject is None:
        starts = [config_file.parent] if config_file is not None else []
        starts.append(Path.cwd())
        pyproject = next(_find_pyprojects(starts), None)

    if pyproject is None:
        return PluginConfig(
            meta_path=explicit_meta,
            root=explicit_meta.parent.parent if explicit_meta else None,
            package=explicit_meta.parent.name if explicit_meta else DEFAULT_PACKAGE,
            search_dirs=_search_dirs(options, None, []),
        )
    section = _pikku_section(pyproject)
    if section is None:
        raise ValueError(f"{pyproject} has no [tool.pikku] section")
    root = pyproject.parent
    package = str(section.get("package", DEFAULT_PACKAGE))
    out_dir = root / str(section.get("out_dir", "."))
    src_value = section.get("src", ["."])
    src = [root / str(s) for s in src_value] if isinstance(src_value, list) else [root]
    meta_path = explicit_meta or (out_dir / package / META_FILE).resolve()
    return PluginConfig(
        meta_path=meta_path,
        root=root,
        package=package,
        search_dirs=_search_dirs(options, root, src),
        src=tuple(p.resolve() for p in src),
    )


def _ini_settings(config_file: Path) -> tuple[Path | None, Path | None]:
    parser = configparser.ConfigParser()
    parser.read(config_file, encoding="utf-8")
    if not parser.has_section(INI_SECTION):
        return None, None
    base = config_file.parent
    meta = parser.get(INI_SECTION, "meta", fallback=None)
    project = parser.get(INI_SECTION, "pyproject", fallback=None)
    meta_path = (base / os.path.expandvars(meta.strip())).resolve() if meta else None
    pyproject: Path | None = None
    if project:
        pyproject = (base / os.path.expandvars(project.strip())).resolve()
        if pyproject.is_dir():
            pyproject = pyproject / "pyproject.toml"
    return meta_path, pyproject


def _pikku_section(pyproject: Path) -> dict[str, object] | None:
    with pyproject.open("rb") as f:
        data = tomllib.load(f)
    tool = data.get("tool")
    section = tool.get("pikku") if isinstance(tool, dict) else None
    return section if isinstance(section, dict) else None


def _find_pyprojects(starts: list[Path]) -> Iterator[Path]:
    seen: set[Path] = set()
    for start in starts:
        for directory in (start, *start.parents):
            if directory in seen:
                break
            seen.add(directory)
            candidate = directory / "pyproject.toml"
            if candidate.is_file():
                try:
                    if _pikku_section(candidate) is not None:
                        yield candidate
                except (OSError, tomllib.TOMLDecodeError):
                    pass
            if any((directory / marker).exists() for marker in _REPO_MARKERS):
                break


def _search_dirs(options: Options, root: Path | None, src: list[Path]) -> tuple[Path, ...]:
    """Approximates mypy's module search path for the modules named by the map."""
    dirs: list[Path] = []
    env = os.environ.get("MYPYPATH", "")
    for entry in [*env.split(os.pathsep), *options.mypy_path]:
        if entry:
            dirs.append(Path(entry).resolve())
    dirs.append(Path.cwd())
    if root is not None:
        dirs.append(root)
    for s in src:
        dirs.extend((s, s.parent))
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return tuple(unique)
