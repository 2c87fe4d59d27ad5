"""Which modules the map's types live in, so that they are part of the build.

A name looked up from a hook is found only if its module is in mypy's build. A module that uses
the pikku API gets, with ``get_additional_deps``, the modules of the types of the RPCs and
workflows whose names appear in it as string literals (not of the whole map: that would tie
every workflow module to every other one in one import cycle), and only modules that exist
(mypy reports a missing dependency as an import error).
"""

from __future__ import annotations

import functools
import importlib.machinery
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mypy.nodes import Import, ImportAll, ImportFrom, MypyFile

if TYPE_CHECKING:
    from pikku_typing.mypy.config import PluginConfig
    from pikku_typing.mypy.meta import WorkflowMap

DEP_PRIORITY: Final = 10
"""mypy.build.PRI_MED: the priority of an ordinary import."""
_LIBRARY_MARKERS: Final = ("site-packages", "dist-packages", "typeshed")


def is_own(module: str, packages: Iterable[str]) -> bool:
    """``pikku_typing`` itself or the generated package: never given the map's modules."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def is_library(path: str) -> bool:
    """An installed module (or typeshed's): it cannot use the project's map."""
    return any(marker in path for marker in _LIBRARY_MARKERS)


def additional_deps(
    file: MypyFile, wmap: WorkflowMap | None, packages: tuple[str, ...], config: PluginConfig
) -> list[tuple[int, str, int]]:
    """The modules ``file`` may need for the types of the RPCs and workflows it names."""
    if wmap is None or not imports_any(file, packages):
        return []
    used = string_literals(file.path).intersection(wmap.type_names)
    names = {name for key in used for name in wmap.type_names[key]}
    modules = modules_of(names, config.search_dirs)
    return [(DEP_PRIORITY, m, -1) for m in modules if m != file.fullname]


def imports_any(file: MypyFile, packages: Iterable[str]) -> bool:
    """Whether ``file`` imports (absolutely) one of ``packages`` or a submodule of one."""
    prefixes = tuple(packages)
    for imp in file.imports:
        if isinstance(imp, Import):
            ids = [module for module, _ in imp.ids]
        elif isinstance(imp, ImportFrom | ImportAll) and imp.relative == 0:
            ids = [imp.id]
        else:
            continue
        for module in ids:
            if any(module == p or module.startswith(p + ".") for p in prefixes):
                return True
    return False


_STRING = re.compile(r"""(?P<q>["'])(?P<s>[^"'\\\n]{1,200})(?P=q)""")


def string_literals(path: str) -> set[str]:
    """The short one-line string literals of a source file (empty if it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return set()
    return {m.group("s") for m in _STRING.finditer(text)}


def modules_of(names: Iterable[str], search_dirs: tuple[Path, ...]) -> list[str]:
    """The existing modules that define ``names`` (``app.types`` for ``app.types.User``)."""
    found: set[str] = set()
    for name in names:
        parts = name.split(".")
        for n in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:n])
            if module_exists(module, search_dirs):
                found.add(module)
                break
    return sorted(found)


@functools.lru_cache(maxsize=1024)
def module_exists(module: str, search_dirs: tuple[Path, ...]) -> bool:
    parts = module.split(".")
    top = parts[0]
    if top in sys.stdlib_module_names and not top.startswith("_"):
        return True
    if any(_in_dir(base, parts) for base in search_dirs):
        return True
    return _installed_typed(parts)


def _in_dir(base: Path, parts: list[str]) -> bool:
    path = base.joinpath(*parts)
    return (
        path.with_suffix(".py").is_file()
        or path.with_suffix(".pyi").is_file()
        or (path / "__init__.py").is_file()
        or (path / "__init__.pyi").is_file()
    )


def _installed_typed(parts: list[str]) -> bool:
    """An installed package mypy can read: with a ``py.typed`` marker or a ``-stubs`` package."""
    for top in (f"{parts[0]}-stubs", parts[0]):
        try:
            spec = importlib.machinery.PathFinder.find_spec(top)
        except (ImportError, ValueError):
            continue
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        for location in map(Path, locations):
            typed = top.endswith("-stubs") or (location / "py.typed").is_file()
            if typed and (len(parts) == 1 or _in_dir(location, parts[1:])):
                return True
    return False
