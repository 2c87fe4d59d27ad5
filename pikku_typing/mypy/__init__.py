"""The mypy plugin of pikku-workflows: enable it with ``plugins = ["pikku_typing.mypy"]``.

On the plain ``pikku_typing`` API it checks, against the generated map (``workflow_meta.json``,
found from ``[tool.pikku]``):

* ``await workflow.do(step, "users.create", data)`` and ``await rpc.invoke("users.get", data)``:
  the RPC exists (``pikku-unknown-rpc``), the data fits its input type (``pikku-rpc-data``); the
  awaited value has the RPC's output type;
* ``runtime.client("onboarding")``: the workflow exists (``pikku-unknown-workflow``) and the client
  is ``WorkflowClient[Input, Output]``; ``client.start(input)`` gets the workflow's input type
  (``pikku-workflow-input``).

Without a map (``pikku-analyze`` not run yet) it notes it once (``pikku-no-map``) and checks nothing.
Tested with mypy 1.19.1, 2.0.0 and 2.4.1 (``pyproject.toml`` pins ``>=1.19,<2.5``: mypy 1.18
validates ``--disable-error-code`` before it loads plugins, so it rejects the plugin's codes).
Bump ``__version__`` (``version.py``) on every change.
"""

from __future__ import annotations

from mypy.plugin import Plugin

# Imported before ``plugin`` is defined: importing the submodule ``pikku_typing.mypy.plugin``
# binds the package attribute ``plugin`` to it, and the function below must win.
from pikku_typing.mypy.plugin import PikkuPlugin
from pikku_typing.mypy.version import __version__

__all__ = ["PikkuPlugin", "__version__", "plugin"]


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point (``plugins = ["pikku_typing.mypy"]``)."""
    return PikkuPlugin
