"""Step kinds: one module per kind of step a workflow function can take.

Each module holds the body of one ``Workflow`` method (``call``: ``workflow.do``;
``sleep``: ``workflow.sleep``); :class:`~pikku_typing.runtime.context.RunContext` guards
and delegates to it. A body gets the run context and uses what every kind shares:
``ctx.next_key`` / ``ctx.recorded`` (keys and replay checks), ``ctx.insert_at_boundary()`` (a new step's insert, stopped by a cancel request),
``ctx.park`` / ``ctx.park_for`` (wait outside the pass), ``ctx.services`` (store, queue,
registry).
"""
