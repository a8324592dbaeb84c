"""Shared helpers: the ``common`` layer, put on the import path of the
functions that name it."""


def shout(text: str) -> str:
    return text.upper() + "!"
