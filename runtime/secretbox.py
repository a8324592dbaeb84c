"""Secrets at rest: Fernet encryption under one key per installation.

The key is ``ERRAND_SECRET_KEY`` when set. Otherwise it lives in
``<data_dir>/secret.key``, made on first use, readable by its owner only.
Every process that shares the database must use the same key: a secret
stored under one key cannot be read under another.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from errors import ConfigError, Conflict
from settings import Settings

KEY_FILE = "secret.key"


def encrypt(value: str, settings: Settings) -> bytes:
    """``value`` encrypted and authenticated under the installation's key."""
    return _fernet(settings).encrypt(value.encode())


def decrypt(name: str, ciphertext: bytes, settings: Settings) -> str:
    """The value of the secret ``name``, or an error that says it is unreadable."""
    try:
        return _fernet(settings).decrypt(bytes(ciphertext)).decode()
    except InvalidToken:
        raise Conflict(
            f"secret {name!r} cannot be decrypted: it was stored under another "
            "secret key; set it again"
        ) from None


def _fernet(settings: Settings) -> Fernet:
    if settings.secret_key:
        return _fernet_for(settings.secret_key.encode(), "ERRAND_SECRET_KEY")
    path = settings.data_dir / KEY_FILE
    return _fernet_for(read_or_create_key(path), str(path))


@functools.lru_cache(maxsize=8)
def _fernet_for(key: bytes, source: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError:
        raise ConfigError(
            f"the secret key in {source} is not a Fernet key "
            "(32 url-safe base64-encoded bytes)"
        ) from None


def read_or_create_key(path: Path) -> bytes:
    """The key stored at ``path``, generated there first if there is none.

    Safe when several processes start at once: each writes a candidate key
    to a private file, then links it into place. Linking fails when another
    process got there first, and nobody can ever read half a key.
    """
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass

    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp opens with O_CREAT | O_EXCL and mode 0600.
    fd, candidate = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(Fernet.generate_key())
            file.flush()
            os.fsync(file.fileno())
        os.link(candidate, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(candidate)
    return path.read_bytes().strip()
