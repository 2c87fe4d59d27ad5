"""The mypy plugin beyond single YAML cases: real ``mypy`` processes on real files.

The incremental cache is refreshed when the generated map changes (``report_config_data``),
the error codes work with ``--disable-error-code`` on the command line, the no-map note is given
once per run, the map's type modules are brought into the build (``get_additional_deps``) and a
map naming a module that does not exist is harmless.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mypy.options import Options
from mypy.plugin import Plugin, ReportConfigContext

import pikku_typing.mypy as plugin_entry
from pikku_typing.meta import REPORT_VERSION, AnalysisReport
from pikku_typing.mypy import errorcodes
from pikku_typing.mypy.meta import SUPPORTED_VERSION, MetaStore
from pikku_typing.mypy.plugin import PikkuPlugin

REPO = Path(__file__).resolve().parent.parent
FIXTURE_APP = REPO / "tests" / "typecheck" / "fixture_app"
META = Path("pikku_gen") / "workflow_meta.json"
MYPY_INI = """\
[mypy]
plugins = pikku_typing.mypy
strict = True

[mypy-pikku_typing.*]
follow_imports = silent
"""


@pytest.fixture(scope="module")
def mypypath(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MYPYPATH entry holding only ``pikku_typing`` (mypy does not see editable installs)."""
    path = tmp_path_factory.mktemp("mypypath")
    (path / "pikku_typing").symlink_to(REPO / "pikku_typing")
    return path


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory: pytest.TempPathFactory, mypypath: Path) -> Path:
    """An incremental cache holding the library modules, copied by each test (speed only)."""
    project = tmp_path_factory.mktemp("warm")
    _copy_fixture(project)
    (project / "main.py").write_text("import pikku_typing\n")
    cache = project / ".mypy_cache"
    _mypy(project, mypypath, cache)
    return cache


@pytest.fixture
def project(tmp_path: Path, warm_cache: Path) -> Iterator[Path]:
    _copy_fixture(tmp_path)
    shutil.copytree(warm_cache, tmp_path / ".mypy_cache")
    yield tmp_path


def _copy_fixture(dest: Path) -> None:
    shutil.copytree(
        FIXTURE_APP, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
    )
    (dest / "mypy.ini").write_text(MYPY_INI)
    _map_is_fresh(dest)


def _map_is_fresh(project: Path) -> None:
    """The map newer than every source (a checkout or a copy may order the mtimes otherwise:
    the plugin would then rightly call the map stale)."""
    newest = max(p.stat().st_mtime for p in project.rglob("*.py"))
    os.utime(project / META, (newest + 10, newest + 10))


def _mypy(
    project: Path,
    mypypath: Path,
    cache: Path | None = None,
    *args: str,
    files: tuple[str, ...] = ("main.py",),
) -> subprocess.CompletedProcess[str]:
    cache = cache or project / ".mypy_cache"
    env = {**os.environ, "MYPYPATH": str(mypypath)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--cache-dir",
            str(cache),
            "--no-error-summary",
            *args,
            *files,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.stderr == "", result.stderr
    return result.stdout.splitlines()


def _edit_map(project: Path, rename: dict[str, str]) -> None:
    path = project / META
    data = json.loads(path.read_text())
    for rpc in data["rpcs"]:
        rpc["name"] = rename.get(rpc["name"], rpc["name"])
    path.write_text(json.dumps(data, indent=2))


CREATE_USER = """\
from pikku_typing import Workflow


async def wf(workflow: Workflow) -> str:
    user = await workflow.do("s", "users.create", {"email": "a@example.com", "name": "A"})
    return user.id
"""


def test_incremental_cache_is_refreshed_when_the_map_changes(project: Path, mypypath: Path) -> None:
    (project / "main.py").write_text(CREATE_USER)
    assert _lines(_mypy(project, mypypath)) == []
    # Nothing changed: same verdict from the cache.
    assert _lines(_mypy(project, mypypath)) == []

    _edit_map(project, {"users.create": "users.register"})
    # app/rpcs.py defines users.create: the map is stale (issue 10), not a typo
    assert _lines(_mypy(project, mypypath)) == [
        "main.py:5: error: Unknown RPC 'users.create': the workflow map is stale: run "
        "pikku-analyze (app/rpcs.py defines it)  [pikku-unknown-rpc]",
        'main.py:6: error: Returning Any from function declared to return "str"  [no-any-return]',
    ]

    _edit_map(project, {"users.register": "users.create"})
    assert _lines(_mypy(project, mypypath)) == []


def test_map_changes_that_do_not_affect_types_keep_the_digest(project: Path) -> None:
    options = Options()
    options.config_file = str(project / "mypy.ini")
    cwd = Path.cwd()
    os.chdir(project)
    try:
        store = MetaStore(PikkuPlugin(options).config)
        before = store.get().digest
        data = json.loads((project / META).read_text())
        for workflow in data["workflows"]:
            workflow["line"] += 10
            workflow["description"] = "moved"
        (project / META).write_text(json.dumps(data))
        assert store.get().digest == before
        data["rpcs"][0]["output_type"] = "app.types.User"
        (project / META).write_text(json.dumps(data))
        assert store.get().digest != before
    finally:
        os.chdir(cwd)


def test_report_config_data_carries_the_map_digest(project: Path) -> None:
    options = Options()
    options.config_file = str(project / "mypy.ini")
    cwd = Path.cwd()
    os.chdir(project)
    try:
        plugin = PikkuPlugin(options)
        user_module = ReportConfigContext("main", str(project / "main.py"), is_check=True)
        data = plugin.report_config_data(user_module)
        assert data["map"] == plugin.store.get().digest != "missing"
        assert data["plugin"].startswith(plugin_entry.__version__ + ":")
        library = ReportConfigContext("pydantic.main", "/x/site-packages/pydantic/main.py", True)
        assert plugin.report_config_data(library) is None
        own = ReportConfigContext(
            "pikku_typing.interaction", str(REPO / "pikku_typing/interaction.py"), True
        )
        assert plugin.report_config_data(own) is None
        (project / META).unlink()
        assert plugin.report_config_data(user_module)["map"] == "missing"
    finally:
        os.chdir(cwd)


def test_disable_error_code_on_the_command_line(project: Path, mypypath: Path) -> None:
    (project / "main.py").write_text(
        "from pikku_typing import rpc\n\n\n"
        "async def f() -> None:\n"
        '    await rpc.invoke("users.gett", {"user_id": "u1"})\n'
        '    await rpc.invoke("users.get", {"user_id": 1})\n'
    )
    default = _lines(_mypy(project, mypypath))
    assert default == [
        "main.py:5: error: Unknown RPC 'users.gett'; did you mean 'users.get'?  [pikku-unknown-rpc]",
        "main.py:6: error: Data for RPC 'users.get' has incompatible type \"dict[str, int]\"; "
        'expected "GetUserInput"  [pikku-rpc-data]',
        'main.py:6: note: Incompatible types (expression has type "int", TypedDict item "user_id" '
        'has type "str")',
    ]
    # A mypy option: this run checks everything again (about 10 s), so only one.
    disabled = _mypy(project, mypypath, None, "--disable-error-code", "pikku-unknown-rpc")
    assert _lines(disabled) == [line for line in default if "pikku-unknown-rpc" not in line]


def test_no_map_note_is_given_once_per_run(project: Path, mypypath: Path) -> None:
    (project / META).unlink()
    call = 'from pikku_typing import rpc\n\n\nasync def f() -> None:\n    await rpc.invoke("users.get", 1)\n'
    (project / "main.py").write_text(call)
    (project / "other.py").write_text(call)
    result = _mypy(project, mypypath, None, files=("main.py", "other.py"))
    lines = _lines(result)
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        'note: pikku: the workflow map "pikku_gen/workflow_meta.json" does not exist yet; run '
        "pikku-analyze to generate it (RPC and workflow names are not checked until then)"
    )
    assert result.returncode == 0


def test_type_modules_of_the_map_join_the_build(project: Path, mypypath: Path) -> None:
    """``main`` imports no module of the app, yet the RPC's output type resolves."""
    (project / "main.py").write_text(
        "from pikku_typing import rpc\n\n\n"
        "async def f() -> None:\n"
        '    reveal_type(await rpc.invoke("users.get", {"user_id": "u1"}))\n'
    )
    assert _lines(_mypy(project, mypypath)) == [
        'main.py:5: note: Revealed type is "app.types.User"'
    ]


def test_a_map_naming_missing_modules_is_harmless(project: Path, mypypath: Path) -> None:
    data = json.loads((project / META).read_text())
    data["rpcs"].append(
        {
            "name": "ghost.call",
            "func": "ghost.rpcs:call",
            "input_type": "ghost.types.In",
            "output_type": "ghost.types.Out",
        }
    )
    (project / META).write_text(json.dumps(data))
    (project / "main.py").write_text(
        "from pikku_typing import rpc\n\n\n"
        "async def f() -> None:\n"
        '    reveal_type(await rpc.invoke("ghost.call", 1))\n'
    )
    assert _lines(_mypy(project, mypypath)) == ['main.py:5: note: Revealed type is "Any"']


def test_the_plugin_reads_the_analyzers_schema() -> None:
    raw = (FIXTURE_APP / META).read_text()
    report = AnalysisReport.model_validate_json(raw)
    assert SUPPORTED_VERSION == REPORT_VERSION
    options = Options()
    options.config_file = str(FIXTURE_APP / "pyproject.toml")
    loaded = MetaStore(PikkuPlugin(options).config).get()
    assert loaded.map is not None and loaded.problem is None
    assert {(r.name, r.input_type, r.output_type) for r in report.rpcs} == {
        (s.name, s.input_type, s.output_type) for s in loaded.map.rpcs.values()
    }
    assert {(w.name, w.input_type, w.output_type) for w in report.workflows} == {
        (s.name, s.input_type, s.output_type) for s in loaded.map.workflows.values()
    }


def test_entry_point_and_error_codes() -> None:
    assert issubclass(plugin_entry.plugin("2.4.1"), Plugin)
    assert plugin_entry.__version__
    from mypy.errorcodes import error_codes

    for code in (
        errorcodes.UNKNOWN_RPC,
        errorcodes.RPC_DATA,
        errorcodes.UNKNOWN_WORKFLOW,
        errorcodes.WORKFLOW_INPUT,
        errorcodes.NO_MAP,
    ):
        assert error_codes[code.code] == code
        assert error_codes[code.code].description == code.description
        assert code.code.startswith("pikku-")


def test_entry_point_survives_importing_the_plugin_module() -> None:
    """``pikku_typing.mypy.plugin`` is also a submodule: the entry must stay the function."""
    import importlib

    submodule = importlib.import_module("pikku_typing.mypy.plugin")
    module = importlib.import_module("pikku_typing.mypy")
    assert callable(module.plugin)
    assert module.plugin("1.19.1") is module.plugin("2.4.1") is submodule.PikkuPlugin


def test_fixture_map_is_what_pikku_analyze_generates(tmp_path: Path) -> None:
    """The YAML suite's map is the real analyzer's output for the fixture app (kept fresh)."""
    shutil.copytree(FIXTURE_APP, tmp_path / "app_copy", ignore=shutil.ignore_patterns("pikku_gen"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pikku_analyzer.cli",
            "--no-progress",
            "--no-cache",
            "--format",
            "json",
            str(tmp_path / "app_copy"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    generated = (tmp_path / "app_copy" / META).read_text()
    assert json.loads(generated) == json.loads((FIXTURE_APP / META).read_text())


TYPO = """\
from pikku_typing import Workflow


async def wf(workflow: Workflow) -> None:
    await workflow.do("s", "users.creat", {"email": "a@example.com", "name": "A"})
    await workflow.do("t", "users.delete", "u1")
"""


def test_stale_map_says_so_instead_of_a_wrong_did_you_mean(project: Path, mypypath: Path) -> None:
    """Issue 10: a name that a source defines but the map lacks, or a map older than a source
    that wires something, is "the workflow map is stale: run pikku-analyze"."""
    (project / "main.py").write_text(TYPO)
    fresh = _lines(_mypy(project, mypypath))
    assert fresh == [
        "main.py:5: error: Unknown RPC 'users.creat'; did you mean 'users.create'?"
        "  [pikku-unknown-rpc]",
        # not defined anywhere yet: a suggestion
        "main.py:6: error: Unknown RPC 'users.delete'; did you mean 'users.get'?"
        "  [pikku-unknown-rpc]",
    ]
    # defined now, the map not regenerated: "did you mean 'users.get'" would be wrong
    rpcs = project / "app" / "rpcs.py"
    rpcs.write_text(
        rpcs.read_text()
        + '\n\n@pikku_func(name="users.delete")\nasync def delete_user(data: str) -> None:\n'
        "    return None\n"
    )
    meta_mtime = (project / META).stat().st_mtime
    os.utime(rpcs, (meta_mtime + 5, meta_mtime + 5))
    assert _lines(_mypy(project, mypypath)) == [
        "main.py:5: error: Unknown RPC 'users.creat': the workflow map is stale: run "
        "pikku-analyze (app/rpcs.py changed since)  [pikku-unknown-rpc]",
        "main.py:6: error: Unknown RPC 'users.delete': the workflow map is stale: run "
        "pikku-analyze (app/rpcs.py defines it)  [pikku-unknown-rpc]",
    ]
