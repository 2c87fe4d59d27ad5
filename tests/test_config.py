"""``[tool.pikku]`` loading: defaults, paths, discovery of pyproject.toml, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pikku_analyzer.config import ConfigError, PikkuConfig, load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, table: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(table, encoding="utf-8")
    return tmp_path


def test_example_config() -> None:
    config = load_config(EXAMPLES)
    assert config == PikkuConfig(
        root=EXAMPLES,
        src=(EXAMPLES / "app",),
        exclude=(),
        package="pikku_gen",
        out_dir=EXAMPLES,
        stub_dir=EXAMPLES.parent / "stubs",
    )
    assert config.package_dir == EXAMPLES / "pikku_gen"
    assert config.stub_package_dir == EXAMPLES.parent / "stubs" / "pikku_gen"


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[tool.pikku]\n"))
    root = tmp_path.resolve()
    assert config.root == root
    assert config.src == (root,)
    assert config.exclude == ()
    assert config.package == "pikku_gen"
    assert config.out_dir == root
    assert config.stub_dir == root  # default: same as out_dir


def test_stub_dir_defaults_to_out_dir(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    config = load_config(write(tmp_path, '[tool.pikku]\nsrc = ["src"]\nout_dir = "gen"\nexclude = ["*_test.py"]\n'))
    assert config.out_dir == config.stub_dir == tmp_path.resolve() / "gen"
    assert config.src == (tmp_path.resolve() / "src",)
    assert config.exclude == ("*_test.py",)


def test_no_pyproject_uses_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config.root == tmp_path.resolve() and config.src == (tmp_path.resolve(),)


def test_pyproject_without_pikku_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[project]\nname = 'x'\n"))
    assert config.package == "pikku_gen"


def test_pyproject_path_and_parent_lookup(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    write(tmp_path, '[tool.pikku]\nsrc = ["app"]\npackage = "gen"\n')
    assert load_config(tmp_path / "pyproject.toml").package == "gen"
    nested = load_config(tmp_path / "app")  # no pyproject there: the parent's [tool.pikku]
    assert nested.root == tmp_path.resolve() and nested.package == "gen"


def test_default_is_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[tool.pikku]\npackage = "here"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config().package == "here"


@pytest.mark.parametrize(
    "table, message",
    [
        ("[tool.pikku]\nsrcs = ['.']\n", "unknown key(s) in [tool.pikku]: srcs"),
        ("[tool.pikku]\nsrc = 'missing'\n", "is not a directory"),
        ("[tool.pikku]\nsrc = []\n", "at least one directory"),
        ("[tool.pikku]\nsrc = [1]\n", "src must be a list of non-empty strings"),
        ("[tool.pikku]\nexclude = 'x'\nsrc = 5\n", "src must be a list"),
        ("[tool.pikku]\npackage = '1abc'\n", "not a valid Python package name"),
        ("[tool.pikku]\npackage = 'a.b'\n", "must be a plain name"),
        ("[tool.pikku]\npackage = ''\n", "package must be a non-empty string"),
        ("[tool.pikku]\nout_dir = ''\n", "out_dir must be a non-empty string"),
        ("[tool.pikku]\nstub_dir = false\n", "stub_dir must be a non-empty string"),
        ("[tool]\npikku = 3\n", "[tool.pikku] must be a table"),
        ("[tool.pikku\n", "invalid TOML"),
    ],
)
def test_errors(tmp_path: Path, table: str, message: str) -> None:
    write(tmp_path, table)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert message in str(info.value)
    assert str(tmp_path) in str(info.value)  # names the file


def test_out_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "gen").write_text("", encoding="utf-8")
    write(tmp_path, "[tool.pikku]\nout_dir = 'gen'\n")
    with pytest.raises(ConfigError, match="not a directory"):
        load_config(tmp_path)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"expected a directory or a pyproject\.toml"):
        load_config(tmp_path / "file.txt")
