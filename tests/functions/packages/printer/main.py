import sys


def handler(event, context):
    print("to stdout")
    print("to stderr", file=sys.stderr)
    context.logger.info("through the context's logger")
    return {"ok": True}
