"""Small pieces shared by the raw ASGI entries that run ahead of Django (the /v1 proxy, the chat's SSE streams)."""

import asyncio


async def wait_disconnect(receive) -> None:
    """Read `receive` until the client leaves. Run it as the request's one reader once the body is in."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_gone(task: asyncio.Task, gone: asyncio.Task) -> bool:
    """Wait for `task`; if the client leaves first (`gone`, a wait_disconnect task), cancel it. Returns True
    when the client left."""
    await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return False
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return True
