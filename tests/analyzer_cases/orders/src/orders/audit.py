from pikku_typing import Workflow


async def record(workflow: Workflow, what: str) -> None:
    await workflow.do("record", lambda: what)
