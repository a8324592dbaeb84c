"""Takes its time: sleeps for the event's ``seconds`` (default 1).

An ``async def`` handler; the runtime runs it to completion.
"""

import asyncio


async def handler(event, context):
    seconds = event.get("seconds", 1)
    await asyncio.sleep(seconds)
    return {"slept": seconds}
