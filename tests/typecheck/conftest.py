"""Runs the YAML cases of this directory (pytest-mypy-plugins) the way the plugin is meant to run.

Options of pytest-mypy-plugins are global command-line options; these cases need their own
(ini-mode mypy config so the plugin's sections survive, in-process mypy for speed, a private
incremental cache), so they are set here, on this directory's items only, leaving every other
test of the run alone. Each case is checked in a fresh directory holding a copy of
``fixture_app/`` (a project with ``[tool.pikku]`` and its generated ``workflow_meta.json``) unless
the case writes its own ``pyproject.toml``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXTURE_APP = HERE / "fixture_app"
MYPY_INI = HERE / "mypy.ini"
_SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pikku"}

_session_dir: Path | None = None


def _session() -> Path:
    """A private directory for this run: ``cache/`` (mypy's) and ``path/`` (MYPYPATH).

    ``path/`` holds only a link to ``pikku_typing``: mypy does not see editable installs, and
    pointing MYPYPATH at the whole repository would let its other directories shadow the
    cases' modules.
    """
    global _session_dir
    if _session_dir is None:
        _session_dir = Path(tempfile.mkdtemp(prefix="pikku-typecheck-"))
        (_session_dir / "cache").mkdir()
        (_session_dir / "path").mkdir()
        (_session_dir / "path" / "pikku_typing").symlink_to(REPO / "pikku_typing")
    return _session_dir


def fixture_files() -> dict[str, str]:
    """``fixture_app/`` as {relative posix path: content}."""
    files: dict[str, str] = {}
    for path in sorted(FIXTURE_APP.rglob("*")):
        rel = path.relative_to(FIXTURE_APP)
        if path.is_file() and not _SKIP_PARTS.intersection(rel.parts):
            files[rel.as_posix()] = path.read_text(encoding="utf-8")
    return files


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        from pytest_mypy_plugins.collect import File
        from pytest_mypy_plugins.item import YamlTestItem
    except ImportError:  # pragma: no cover - pytest-mypy-plugins is a dev dependency
        return
    fixture = fixture_files()
    for item in items:
        if not isinstance(item, YamlTestItem) or HERE not in item.path.parents:
            continue
        session = _session()
        item.base_ini_fpath = str(MYPY_INI)
        item.base_pyproject_toml_fpath = None
        item.same_process = True
        item.incremental_cache_dir = str(session / "cache")
        mypypath = item.environment_variables.get("MYPYPATH")
        item.environment_variables["MYPYPATH"] = os.pathsep.join(
            p for p in (mypypath, str(session / "path")) if p
        )
        own = {f.path for f in item.files}
        if "pyproject.toml" not in own:
            item.files.extend(File(path=p, content=c) for p, c in fixture.items() if p not in own)


@contextlib.contextmanager
def _keep_sys_modules() -> Iterator[None]:
    """Replaces pytest-mypy-plugins' ``temp_sys_modules`` for these cases.

    pytest-mypy-plugins 4.1 rebinds ``sys.modules`` to a copy after each in-process run; the
    import system keeps using the original dict, and later imports break (hypothesis' pytest
    plugin fails at the end of the session). Nothing needs undoing here: mypy imports no user
    code, and the plugin keeps its state in the plugin object (one per mypy run), so the cases
    also show that loading the plugin again in one process (as dmypy or mypy.api do) works.
    """
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        from pytest_mypy_plugins import utils
        from pytest_mypy_plugins.item import YamlTestItem
    except ImportError:  # pragma: no cover
        return (yield)
    if not isinstance(item, YamlTestItem):
        return (yield)
    original = utils.temp_sys_modules
    utils.temp_sys_modules = _keep_sys_modules
    try:
        return (yield)
    finally:
        utils.temp_sys_modules = original


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _session_dir is not None:
        shutil.rmtree(_session_dir, ignore_errors=True)
