"""Function packages and layers: check an archive, store it, unpack it to run.

A function's package is a zip of a folder that holds ``function.toml``
beside the code, either at the archive's root or inside its single top-level
folder. A layer is a zip whose contents go on the import path as they are.
An archive is checked completely, in memory, before anything is stored, and
a refused one leaves no trace.

Each distinct archive is unpacked once per host, into a folder named by its
sha256 under ``settings.packages_dir``, and shared from then on by every
worker thread and process; the folder appears atomically, complete or not
at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import peewee as pw

import models
from errors import InvalidPackage, NotFound, ValidationFailed
from models import Function, FunctionVersion, Layer, Secret, utcnow
from schemas.common import load
from schemas.functions import ID_PATTERN, ManifestSchema
from settings import MiB, Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

MANIFEST = "function.toml"
MAX_ARCHIVE_BYTES = 50 * MiB
MAX_UNPACKED_BYTES = 50 * MiB

# A zip of many thousands of empty files is small but costly to unpack.
MAX_MEMBERS = 10_000

CHUNK_BYTES = 256 * 1024

# Two deploys racing for the same function on a database without SQLite's
# write lock may collide on a unique index; the loser simply tries again.
DEPLOY_TRIES = 3

# Archive tools add these folders of their own; they are not the package's.
TOOL_FOLDERS = ("__MACOSX/",)

_ID = re.compile(ID_PATTERN)
ID_RULE = (
    "1 to 63 lowercase letters, digits, '_' or '-', starting with a letter or digit"
)


@dataclass(frozen=True)
class Package:
    """A function's archive that passed every check, with its manifest."""

    archive: bytes
    sha256: str
    manifest: dict[str, Any]


def check_id(value: str, what: str = "function id") -> str:
    """``value`` if it is a valid function or layer id, else the 400."""
    if not _ID.match(value):
        raise ValidationFailed(f"{value!r} is not a valid {what}", {what: ID_RULE})
    return value


def inspect_function(archive: bytes) -> Package:
    """Check a function's archive and read its manifest, or refuse it.

    Refused with :class:`InvalidPackage`: anything that is not a zip, a
    member that is a link or whose path leaves the folder, contents over
    :data:`MAX_UNPACKED_BYTES`, no or an invalid ``function.toml``, and a
    handler whose module is not in the package.
    """
    with _open(archive) as zf:
        members = _check_members(zf)
        _verify_contents(zf, members)
        root = _function_root(members)
        manifest = _read_manifest(zf, root)
        _check_handler(members, root, manifest["handler"])
    return Package(archive, _sha256(archive), manifest)


def inspect_layer(archive: bytes) -> str:
    """Check a layer's archive as :func:`inspect_function` does; its sha256."""
    with _open(archive) as zf:
        members = _check_members(zf)
        if not any(not info.is_dir() for info in members):
            raise InvalidPackage("the archive holds no files")
        _verify_contents(zf, members)
    return _sha256(archive)


def deploy_function(function_id: str, archive: bytes) -> tuple[FunctionVersion, bool]:
    """Store ``archive`` as the version of ``function_id`` that runs from now on.

    Returns the version and whether it is new. An archive identical to one
    of the function's versions makes no new version: that version is
    returned, and becomes again the one that runs, so that deploying an
    older folder again brings its code back.
    """
    check_id(function_id)
    package = inspect_function(archive)
    return _store(_store_version, function_id, package)


def _store(store: Callable[..., T], *args: Any) -> T:
    """Run ``store`` in a write transaction, again if a racing deploy won."""
    for _ in range(DEPLOY_TRIES - 1):
        try:
            with models.write_transaction():
                return store(*args)
        except pw.IntegrityError:
            continue
    with models.write_transaction():
        return store(*args)


def _store_version(function_id: str, package: Package) -> tuple[FunctionVersion, bool]:
    _check_references(package.manifest)
    function, _ = Function.get_or_create(id=function_id)
    version = FunctionVersion.get_or_none(
        (FunctionVersion.function == function_id)
        & (FunctionVersion.sha256 == package.sha256)
    )
    created = version is None
    if created:
        highest = (
            FunctionVersion.select(pw.fn.MAX(FunctionVersion.version))
            .where(FunctionVersion.function == function_id)
            .scalar()
        )
        version = FunctionVersion.create(
            function=function,
            version=(highest or 0) + 1,
            sha256=package.sha256,
            archive=package.archive,
            manifest=json.dumps(package.manifest),
        )

    if function.latest_version != version.version:
        (
            Function.update(latest_version=version.version, updated_at=utcnow())
            .where(Function.id == function_id)
            .execute()
        )
    action = "deployed" if created else "redeployed"
    logger.info(
        "function %s: %s version %d (sha256 %s)",
        function_id,
        action,
        version.version,
        package.sha256,
        extra={"action": action, "function_id": function_id},
    )
    return version, created


def _check_references(manifest: dict[str, Any]) -> None:
    """Refuse a manifest naming layers or secrets that do not exist."""
    missing = {
        "layers": _missing(Layer, Layer.name, manifest["layers"]),
        "secrets": _missing(Secret, Secret.name, manifest["secrets"]),
    }
    fields = {
        key: f"not found: {', '.join(names)}" for key, names in missing.items() if names
    }
    if fields:
        described = "; ".join(f"{key}: {text}" for key, text in fields.items())
        message = f"{MANIFEST} names what does not exist ({described})"
        raise InvalidPackage(message, fields)


def _missing(model: type[pw.Model], key: pw.Field, names: list[str]) -> list[str]:
    if not names:
        return []
    found = {row[0] for row in model.select(key).where(key.in_(names)).tuples()}
    return [name for name in names if name not in found]


def delete_function(function_id: str) -> None:
    """Delete a function and all its versions, or the 404."""
    with models.write_transaction():
        FunctionVersion.delete().where(
            FunctionVersion.function == function_id
        ).execute()
        if not Function.delete().where(Function.id == function_id).execute():
            raise NotFound(f"no function {function_id!r}")
    logger.info(
        "function %s deleted",
        function_id,
        extra={"action": "deleted", "function_id": function_id},
    )


def current_version(function_id: str) -> FunctionVersion:
    """The version of ``function_id`` that runs, without its archive, or 404."""
    version = (
        FunctionVersion.select(
            FunctionVersion.id,
            FunctionVersion.function,
            FunctionVersion.version,
            FunctionVersion.sha256,
            FunctionVersion.manifest,
            FunctionVersion.created_at,
        )
        .join(Function)
        .where(
            (Function.id == function_id)
            & (FunctionVersion.version == Function.latest_version)
        )
        .first()
    )
    if version is None:
        raise NotFound(f"no function {function_id!r}")
    return version


def deploy_layer(name: str, archive: bytes) -> tuple[Layer, bool]:
    """Store ``archive`` as the layer ``name``; returns it and whether it changed.

    A layer keeps only its newest content: functions that name it use that
    from their next attempt on.
    """
    # TODO: pin a function version to the layer content it was deployed
    # with; as it is, a layer upload changes every deployed function that
    # names it, and a bad upload breaks them all without a redeploy.
    check_id(name, "layer id")
    sha256 = inspect_layer(archive)
    return _store(_store_layer, name, archive, sha256)


def _store_layer(name: str, archive: bytes, sha256: str) -> tuple[Layer, bool]:
    layer = Layer.get_or_none(Layer.name == name)
    if layer is not None and layer.sha256 == sha256:
        return layer, False

    if layer is None:
        layer = Layer.create(name=name, sha256=sha256, archive=archive)
    else:
        layer.version += 1
        layer.sha256 = sha256
        layer.archive = archive
        layer.updated_at = utcnow()
        layer.save()
    logger.info(
        "layer %s: version %d (sha256 %s)",
        name,
        layer.version,
        sha256,
        extra={"action": "layer_deployed", "layer": name},
    )
    return layer, True


def delete_layer(name: str) -> None:
    """Delete the layer ``name``, or the 404.

    Functions naming it fail from their next attempt on, with a message
    that says the layer is gone.
    """
    if not Layer.delete().where(Layer.name == name).execute():
        raise NotFound(f"no layer {name!r}")
    logger.info(
        "layer %s deleted", name, extra={"action": "layer_deleted", "layer": name}
    )


# TODO: remove unpacked folders no version or layer uses any more; they stay
# on every worker's disk until removed by hand, which a host deploying often
# will notice.
def checkout(version: FunctionVersion, settings: Settings) -> Path:
    """The folder holding ``version``'s code and manifest, unpacked once."""
    target = settings.packages_dir / version.sha256
    if target.is_dir():
        return target

    archive = version.archive
    if archive is None:  # the version was read without its archive
        archive = (
            FunctionVersion.select(FunctionVersion.archive)
            .where(FunctionVersion.id == version.id)
            .scalar()
        )
        if archive is None:
            raise NotFound(f"version {version.version} was deleted")
    return _unpack(bytes(archive), target, function=True)


def checkout_layer(layer: Layer, settings: Settings) -> Path:
    """The folder holding ``layer``'s contents, unpacked once."""
    target = settings.packages_dir / "layers" / layer.sha256
    if target.is_dir():
        return target

    if layer.archive is None:
        # Read without its archive; read it whole now, as it may have changed.
        current = Layer.get_or_none(Layer.name == layer.name)
        if current is None:
            raise NotFound(f"no layer {layer.name!r}")
        return checkout_layer(current, settings)
    return _unpack(bytes(layer.archive), target, function=False)


def _unpack(archive: bytes, target: Path, *, function: bool) -> Path:
    """Unpack into a private folder beside ``target``, then rename it there.

    The rename is atomic, so others see the folder complete or not at all;
    when another thread or process renamed its copy first, ours is dropped.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        with _open(archive) as zf:
            members = _check_members(zf)
            root = _function_root(members) if function else ""
            _extract(zf, members, root, staging)
        staging.chmod(0o755)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], root: str, folder: Path
) -> None:
    """Write the members under ``root`` into ``folder``, files read-only."""
    for info in members:
        relative = _relative(info, root)
        if relative is None:
            continue
        path = folder / relative
        if info.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue

        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as file:
            for chunk in _chunks(zf, info):
                file.write(chunk)
        executable = (info.external_attr >> 16) & 0o111
        path.chmod(0o555 if executable else 0o444)


def _relative(info: zipfile.ZipInfo, root: str) -> str | None:
    """The member's path inside the package, ``None`` if outside ``root``."""
    if not info.filename.startswith(root):
        return None
    return info.filename[len(root) :] or None


def _open(archive: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(archive))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise InvalidPackage("the archive is not a zip file") from None


def _check_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's members, each a plain file or folder inside the package.

    Their ``filename`` comes back normalised (no ``./`` or ``//``); an entry
    for the archive's root folder itself is dropped.
    """
    if len(zf.infolist()) > MAX_MEMBERS:
        raise InvalidPackage(f"the archive holds over {MAX_MEMBERS} members")

    members, total = [], 0
    for info in zf.infolist():
        problem = _member_problem(info)
        if problem:
            raise InvalidPackage(f"member {info.filename!r} {problem}")
        path = PurePosixPath(info.filename)
        if not path.parts:
            continue
        # zipfile matches local headers by ``orig_filename``, so this is safe.
        info.filename = str(path) + ("/" if info.is_dir() else "")
        members.append(info)

        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise InvalidPackage(
                f"the archive unpacks to over {MAX_UNPACKED_BYTES // MiB} MiB"
            )

    _check_names(members)
    return members


def _check_names(members: list[zipfile.ZipInfo]) -> None:
    """Refuse two members of one name, or a file that other members are in."""
    files, seen = set(), set()
    for info in members:
        name = info.filename.rstrip("/")
        if name in seen:
            raise InvalidPackage(f"member {info.filename!r} appears twice")
        seen.add(name)
        if not info.is_dir():
            files.add(name)

    for info in members:
        for parent in PurePosixPath(info.filename).parents:
            if str(parent) in files:
                raise InvalidPackage(
                    f"member {info.filename!r} is inside {str(parent)!r}, a file"
                )


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member cannot be part of a package, or ``None``."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "is not a plain file or folder"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if "\\" in name or "\0" in name:
        return "has a backslash or NUL in its path"

    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in path.parts:
        return "has a path that leaves the folder"
    return None


def _verify_contents(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> None:
    """Decompress every file now, to refuse corrupt members and lying sizes."""
    for info in members:
        if not info.is_dir():
            for _ in _chunks(zf, info):
                pass


def _chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's decompressed bytes, never more than its header declares.

    :func:`_check_members` bounds the sum of the declared sizes, so counting
    what actually comes out bounds the whole, whatever the headers claim.
    """
    written = 0
    try:
        with zf.open(info) as member:
            while chunk := member.read(CHUNK_BYTES):
                written += len(chunk)
                if written > info.file_size:
                    raise InvalidPackage(
                        f"member {info.filename!r} unpacks to more than its header says"
                    )
                yield chunk
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError) as exc:
        raise InvalidPackage(
            f"member {info.filename!r} cannot be unpacked: {exc}"
        ) from None


def _function_root(members: list[zipfile.ZipInfo]) -> str:
    """Where ``function.toml`` sits: at the root, or in the one top folder."""
    names = {info.filename for info in members}
    if MANIFEST in names:
        return ""

    tops = {
        name.split("/", 1)[0] for name in names if not name.startswith(TOOL_FOLDERS)
    }
    if len(tops) == 1:
        root = tops.pop() + "/"
        if root + MANIFEST in names:
            return root
    raise InvalidPackage(
        f"the archive has no {MANIFEST}, at its root or in its single top folder"
    )


def _read_manifest(zf: zipfile.ZipFile, root: str) -> dict[str, Any]:
    try:
        document = tomllib.loads(zf.read(root + MANIFEST).decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidPackage(f"{MANIFEST} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidPackage(f"{MANIFEST} is not valid TOML: {exc}") from None

    try:
        return load(ManifestSchema(), document, MANIFEST)
    except ValidationFailed as exc:
        fields = exc.fields or {}
        described = "; ".join(f"{name}: {message}" for name, message in fields.items())
        raise InvalidPackage(f"{MANIFEST} is not valid: {described}", fields) from None


def _check_handler(members: list[zipfile.ZipInfo], root: str, handler: str) -> None:
    """Refuse a handler whose module is neither ``a/b.py`` nor ``a/b/__init__.py``."""
    module = handler.rpartition(".")[0].replace(".", "/")
    candidates = (f"{root}{module}.py", f"{root}{module}/__init__.py")
    names = {info.filename for info in members}
    if not any(candidate in names for candidate in candidates):
        raise InvalidPackage(
            f"the handler {handler!r} needs {candidates[0][len(root) :]} or "
            f"{candidates[1][len(root) :]} in the package",
            {"handler": "its module is not in the package"},
        )


def _sha256(archive: bytes) -> str:
    return hashlib.sha256(archive).hexdigest()
