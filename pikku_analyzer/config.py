"""``[tool.pikku]`` configuration (the analyzer work fills in loading and validation)."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def package_dir(self) -> Path:
        return self.out_dir / self.package

    @property
    def stub_package_dir(self) -> Path:
        return self.stub_dir / self.package
