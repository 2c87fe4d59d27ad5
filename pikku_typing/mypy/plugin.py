"""The plugin class: a thin dispatcher from mypy's hooks to one module per check."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, final

from mypy.nodes import MypyFile
from mypy.options import Options
from mypy.plugin import (
    MethodContext,
    MethodSigContext,
    Plugin,
    ReportConfigContext,
)
from mypy.types import FunctionLike, Type

from pikku_typing.mypy import names
from pikku_typing.mypy.client import runtime_client_hook, start_hook, start_signature_hook
from pikku_typing.mypy.common import PikkuContext
from pikku_typing.mypy.config import load_config
from pikku_typing.mypy.deps import imports_any, modules_of, string_literals
from pikku_typing.mypy.do import workflow_do_hook
from pikku_typing.mypy.meta import MetaStore
from pikku_typing.mypy.rpc_invoke import rpc_invoke_hook
from pikku_typing.mypy.version import __version__ as PLUGIN_VERSION

DEP_PRIORITY: Final = 10  # mypy.build.PRI_MED: an ordinary import
_LIBRARY_MARKERS: Final = ("site-packages", "dist-packages", "typeshed")


def _source_digest() -> str:
    """Hash of the plugin's own sources: caches refresh even if ``__version__`` was not bumped."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


SOURCE_DIGEST: Final = _source_digest()


@final
class PikkuPlugin(Plugin):
    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.config = load_config(options)
        self.store = MetaStore(self.config)
        self.pctx = PikkuContext(self.store, self.lookup_fully_qualified)
        self._method_hooks: dict[str, Callable[[MethodContext], Type]] = {
            names.WORKFLOW_DO: functools.partial(workflow_do_hook, self.pctx),
            names.RPC_INVOKE: functools.partial(rpc_invoke_hook, self.pctx),
            names.RUNTIME_CLIENT: functools.partial(runtime_client_hook, self.pctx),
            names.CLIENT_START: functools.partial(start_hook, self.pctx),
        }
        self._signature_hooks: dict[str, Callable[[MethodSigContext], FunctionLike]] = {
            names.CLIENT_START: functools.partial(start_signature_hook, self.pctx),
        }
        self._own_packages = (names.PACKAGE, self.config.package)

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return self._method_hooks.get(fullname)

    def get_method_signature_hook(
        self, fullname: str
    ) -> Callable[[MethodSigContext], FunctionLike] | None:
        return self._signature_hooks.get(fullname)

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        """A module using the pikku API depends on the modules of the types it may look up."""
        if self._is_own(file.fullname) or not imports_any(file, self._own_packages):
            return []
        wmap = self.store.get().map
        if wmap is None:
            return []
        used = string_literals(file.path).intersection(wmap.type_names)
        names = {name for key in used for name in wmap.type_names[key]}
        modules = modules_of(names, self.config.search_dirs)
        return [(DEP_PRIORITY, m, -1) for m in modules if m != file.fullname]

    def report_config_data(self, ctx: ReportConfigContext) -> Any:
        """The map's digest, so that cached modules are checked again when the map changes."""
        if self._is_own(ctx.id) or any(marker in ctx.path for marker in _LIBRARY_MARKERS):
            return None
        return {"plugin": f"{PLUGIN_VERSION}:{SOURCE_DIGEST}", "map": self.store.get().digest}

    def _is_own(self, module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in self._own_packages)
