"""Fails until the attempt the event names, to show retries at work."""


def handler(event, context):
    succeed_on = event.get("succeedOnAttempt", 2)
    if context.attempt < succeed_on:
        raise RuntimeError(
            f"failing on purpose: attempt {context.attempt}, "
            f"succeeding on attempt {succeed_on}"
        )
    return {"attempt": context.attempt}
