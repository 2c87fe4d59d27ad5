"""The plugin class: a thin dispatcher from mypy's hooks to one module per check."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, final

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
from pikku_typing.mypy.deps import additional_deps, is_library, is_own
from pikku_typing.mypy.do import workflow_do_hook
from pikku_typing.mypy.events import (
    run_child_hook,
    send_event_hook,
    start_child_hook,
    wait_for_event_hook,
)
from pikku_typing.mypy.meta import MetaStore
from pikku_typing.mypy.rpc_invoke import rpc_invoke_hook
from pikku_typing.mypy.stubs import relax_signature_hook
from pikku_typing.mypy.version import PLUGIN_FINGERPRINT


@final
class PikkuPlugin(Plugin):
    """Dispatches mypy's hooks by fullname (``names``) to the check modules."""

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
            names.WORKFLOW_WAIT_FOR_EVENT: functools.partial(wait_for_event_hook, self.pctx),
            names.WORKFLOW_RUN_CHILD: functools.partial(run_child_hook, self.pctx),
            names.WORKFLOW_START_CHILD: functools.partial(start_child_hook, self.pctx),
            names.CLIENT_SEND_EVENT: functools.partial(send_event_hook, self.pctx),
            names.RUNTIME_SEND_EVENT: functools.partial(send_event_hook, self.pctx),
        }
        self._signature_hooks: dict[str, Callable[[MethodSigContext], FunctionLike]] = {
            names.CLIENT_START: functools.partial(start_signature_hook, self.pctx),
        }
        # The same checks on the generated partial stubs of pikku_typing (stubs.py).
        for stub_name, library_name in names.STUB_METHODS.items():
            self._method_hooks[stub_name] = self._method_hooks[library_name]
            self._signature_hooks[stub_name] = self._relax_stub_signature
        self._method_hooks[names.STUB_CLIENT_START] = self._method_hooks[names.CLIENT_START]
        self._signature_hooks[names.STUB_CLIENT_START] = self._signature_hooks[names.CLIENT_START]
        self._own_packages = (names.PACKAGE, self.config.package)

    def _relax_stub_signature(self, ctx: MethodSigContext) -> FunctionLike:
        """The stubs' overloads give way to the plugin's checks only when it has a map to
        check against; without one they keep checking on their own."""
        if self.store.get().map is None:
            return ctx.default_signature
        return relax_signature_hook(ctx)

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return self._method_hooks.get(fullname)

    def get_method_signature_hook(
        self, fullname: str
    ) -> Callable[[MethodSigContext], FunctionLike] | None:
        return self._signature_hooks.get(fullname)

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        """A module using the pikku API depends on the modules of the types it may look up."""
        if is_own(file.fullname, self._own_packages):
            return []
        return additional_deps(file, self.store.get().map, self._own_packages, self.config)

    def report_config_data(self, ctx: ReportConfigContext) -> Any:
        """The map's digest, so that cached modules are checked again when the map changes."""
        if is_own(ctx.id, self._own_packages) or is_library(ctx.path):
            return None
        loaded = self.store.get()
        stale: tuple[str, ...] = ()
        if loaded.map is not None:
            stale = self.pctx.stale.newer_wiring_files(loaded.map.path)
        return {"plugin": PLUGIN_FINGERPRINT, "map": loaded.digest, "stale": list(stale)}
