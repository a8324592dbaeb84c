"""Greets whoever the event names, in the manifest's words."""

import os


def handler(event, context):
    name = event.get("name", "world")
    return {"message": f"{os.environ['GREETING']}, {name}"}
