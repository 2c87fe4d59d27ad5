"""Code generation: the package ``pikku-analyze`` writes from an :class:`AnalysisReport`.

The analyzer CLI calls :func:`render_package`, then :func:`write_generated` (or, with
``--check``, :func:`stale_generated`). See SPEC section 5 for what the package contains.

* ``.py`` files (and ``workflow_meta.json``) go to ``config.package_dir``
  (``<out_dir>/<package>/``); every ``.py`` module has a ``.pyi`` twin in
  ``config.stub_package_dir`` (``<stub_dir>/<package>/``; the same directory by default).
* Output is deterministic, starts with a "generated" header, is already in ``ruff format``
  style and passes ``mypy --strict`` and ``pyright --strict``. The two stubs with one
  overload per RPC / workflow carry ``# mypy: ignore-errors`` (:data:`MYPY_SKIP`) so that
  users' mypy runs skip the quadratic overload-overlap check of them.
* Generated files that are no longer produced (a module dropped by a newer version of this
  generator, a package renamed in place) are found by :func:`obsolete_generated` and removed by
  :func:`remove_obsolete`: only files in the package directories that start with the generated
  header (or are ``workflow_meta.json``), never anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pikku_analyzer.codegen.render import (
    HEADER,
    META_JSON,
    MYPY_SKIP,
    PY_MODULES,
    TYPED_API_PACKAGE,
    is_stub,
    render_files,
    render_typed_api,
)
from pikku_analyzer.codegen.write import leftover_files, stale_files, write_files
from pikku_analyzer.config import PikkuConfig
from pikku_typing.meta import AnalysisReport


@dataclass(frozen=True)
class GeneratedFile:
    """One generated file: absolute ``path`` and its full ``content``."""

    path: Path
    content: str


def render_package(report: AnalysisReport, config: PikkuConfig) -> list[GeneratedFile]:
    """Every file of the generated package, sorted by path (nothing is written)."""
    from pikku_analyzer.shapes import with_type_shapes

    report = with_type_shapes(report, config)  # the meta's field-level type shapes (read statically)
    package_dir = config.package_dir.resolve()
    stub_dir = config.stub_package_dir.resolve()
    files = [
        GeneratedFile(path=(stub_dir if is_stub(name) else package_dir) / name, content=content)
        for name, content in render_files(report, config.package).items()
    ]
    if has_typed_api(config):
        api_dir = typed_api_dir(config)
        files += [
            GeneratedFile(path=api_dir / name, content=content)
            for name, content in render_typed_api(report, config.package).items()
        ]
    return sorted(files, key=lambda f: f.path)


def has_typed_api(config: PikkuConfig) -> bool:
    """Whether the partial stubs of ``pikku_typing`` are generated: when the stubs have a
    directory of their own (``stub_dir``, e.g. ``"typings"``, pyright's default ``stubPath``),
    not when they sit beside the generated ``.py`` files (a ``pikku_typing`` directory in the
    source tree would shadow the library for the type checkers of every other project)."""
    return config.stub_dir.resolve() != config.out_dir.resolve()


def typed_api_dir(config: PikkuConfig) -> Path:
    """``<stub_dir>/pikku_typing/``: where the partial stubs of the library go."""
    return config.stub_dir.resolve() / TYPED_API_PACKAGE


def write_generated(files: Sequence[GeneratedFile]) -> list[Path]:
    """Write the files whose content changed (atomically: temp file + rename); return them."""
    return write_files(files)


def stale_generated(files: Sequence[GeneratedFile]) -> list[Path]:
    """Paths of the files that are missing or differ from ``files`` (nothing is written)."""
    return stale_files(files)


def obsolete_generated(files: Sequence[GeneratedFile], config: PikkuConfig) -> list[Path]:
    """Generated files in the package directories that ``files`` no longer contains."""
    directories = {config.package_dir.resolve(), config.stub_package_dir.resolve()}
    if config.stub_dir.resolve() != config.out_dir.resolve():
        directories.add(typed_api_dir(config))
    return leftover_files(sorted(directories), files)


def remove_obsolete(files: Sequence[GeneratedFile], config: PikkuConfig) -> list[Path]:
    """Delete :func:`obsolete_generated` files; return them."""
    removed = obsolete_generated(files, config)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


__all__ = [
    "HEADER",
    "META_JSON",
    "MYPY_SKIP",
    "PY_MODULES",
    "GeneratedFile",
    "has_typed_api",
    "obsolete_generated",
    "remove_obsolete",
    "render_package",
    "stale_generated",
    "typed_api_dir",
    "write_generated",
]
