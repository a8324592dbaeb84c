"""Greets with code from the ``common`` layer and proves it holds a secret.

The answer shows the token's length, never the token.
"""

import os

from common import shout


def handler(event, context):
    token = os.environ["GREETER_TOKEN"]
    return {
        "greeting": shout(f"hello, {event.get('name', 'world')}"),
        "tokenLength": len(token),
    }
