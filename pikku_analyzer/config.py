"""``[tool.pikku]`` configuration: the resolved :class:`PikkuConfig` and its loader."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class PikkuConfig:
    """Resolved configuration; every path is absolute."""

    root: Path
    """The project root (the directory of the pyproject.toml, or ROOT)."""
    src: tuple[Path, ...] = ()
    exclude: tuple[str, ...] = ()
    package: str = "pikku_gen"
    out_dir: Path = field(default_factory=Path)
    """Directory in which the package directory ``<out_dir>/<package>/`` is written."""
    stub_dir: Path = field(default_factory=Path)
    """Directory in which ``<stub_dir>/<package>/*.pyi`` are written (default: out_dir)."""
    configured: bool = field(default=True, compare=False)
    """False when no ``[tool.pikku]`` table was found: every value is a default."""

    @property
    def package_dir(self) -> Path:
        return self.out_dir / self.package

    @property
    def stub_package_dir(self) -> Path:
        return self.stub_dir / self.package


# --------------------------------------------------------------------------- loading

CONFIG_KEYS = ("src", "exclude", "package", "out_dir", "stub_dir")


class ConfigError(Exception):
    """The ``[tool.pikku]`` section (or the command line) is invalid: exit code 2."""


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` at ``start`` or above it."""
    here = start if start.is_dir() else start.parent
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _str_list(value: object, key: str, source: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{source}: [tool.pikku] {key} must be a list of non-empty strings")
    return list(value)


def _identifier_path(value: object, key: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: [tool.pikku] {key} must be a non-empty string")
    if not all(part.isidentifier() for part in value.split(".")):
        raise ConfigError(
            f"{source}: [tool.pikku] {key} = {value!r} is not a valid Python package name"
        )
    return value


def config_from_table(root: Path, table: dict[str, object], source: str = "pyproject.toml") -> PikkuConfig:
    """Validate a ``[tool.pikku]`` table (paths relative to ``root``) into a config."""
    root = root.resolve()
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        known = ", ".join(CONFIG_KEYS)
        raise ConfigError(
            f"{source}: unknown key(s) in [tool.pikku]: {', '.join(unknown)} (known keys: {known})"
        )
    src = _str_list(table.get("src", ["."]), "src", source)
    if not src:
        raise ConfigError(f"{source}: [tool.pikku] src must name at least one directory")
    exclude = _str_list(table.get("exclude", []), "exclude", source)
    package = _identifier_path(table.get("package", "pikku_gen"), "package", source)
    if "." in package:
        raise ConfigError(f"{source}: [tool.pikku] package = {package!r} must be a plain name")
    out_raw = table.get("out_dir", ".")
    if not isinstance(out_raw, str) or not out_raw:
        raise ConfigError(f"{source}: [tool.pikku] out_dir must be a non-empty string")
    stub_raw = table.get("stub_dir", out_raw)
    if not isinstance(stub_raw, str) or not stub_raw:
        raise ConfigError(f"{source}: [tool.pikku] stub_dir must be a non-empty string")
    src_paths: list[Path] = []
    for entry in src:
        path = (root / entry).resolve()
        if not path.is_dir():
            raise ConfigError(f"{source}: [tool.pikku] src entry {entry!r} is not a directory ({path})")
        src_paths.append(path)
    out_dir = (root / out_raw).resolve()
    stub_dir = (root / stub_raw).resolve()
    for path, key in ((out_dir, "out_dir"), (stub_dir, "stub_dir")):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{source}: [tool.pikku] {key} {path} exists and is not a directory")
    return PikkuConfig(
        root=root,
        src=tuple(src_paths),
        exclude=tuple(exclude),
        package=package,
        out_dir=out_dir,
        stub_dir=stub_dir,
    )


def load_config(root: Path | str | None = None) -> PikkuConfig:
    """Read ``[tool.pikku]`` for the project at ``root`` (default: the current directory).

    ``root`` may be the project directory or its ``pyproject.toml``; without a
    ``pyproject.toml`` at ``root`` the nearest one above is used; with none at all,
    or one without ``[tool.pikku]``, the defaults apply with ``root`` as the project root.
    Raises :class:`ConfigError` for unreadable files, unknown keys and bad values.
    """
    start = Path.cwd() if root is None else Path(root)
    if not start.exists():
        raise ConfigError(f"{start}: no such file or directory")
    if start.is_file():
        if start.name != "pyproject.toml":
            raise ConfigError(f"{start}: expected a directory or a pyproject.toml")
        pyproject: Path | None = start
    else:
        pyproject = start / "pyproject.toml"
        if not pyproject.is_file():
            found = find_pyproject(start.resolve())
            # only adopt a parent pyproject when it configures pikku
            pyproject = found if found is not None and _has_pikku(found) else None
    if pyproject is None:
        return replace(config_from_table(start, {}, source=str(start)), configured=False)
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{pyproject}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{pyproject}: invalid TOML: {exc}") from None
    tool = data.get("tool", {})
    table = tool.get("pikku", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.pikku] must be a table")
    config = config_from_table(pyproject.parent, table, source=str(pyproject))
    configured = isinstance(tool, dict) and "pikku" in tool
    return config if configured else replace(config, configured=False)


def defaults_warning(config: PikkuConfig) -> str | None:
    """The warning for a project without ``[tool.pikku]``: the defaults used, or None."""
    if config.configured:
        return None
    where = config.root / "pyproject.toml"
    found = f"no [tool.pikku] table in {where}" if where.is_file() else f"no pyproject.toml in {config.root}"
    return (
        f"{found}: using the defaults src = [\".\"], package = \"pikku_gen\", out_dir = \".\" "
        f"(the package is generated in {config.package_dir}); add a [tool.pikku] table to "
        "pyproject.toml to choose them"
    )


def _has_pikku(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    tool = data.get("tool")
    return isinstance(tool, dict) and "pikku" in tool
