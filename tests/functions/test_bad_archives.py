"""Archives the gateway refuses: each with a clear 400, and nothing stored."""

from __future__ import annotations

import io
import zipfile

import pytest

MiB = 1024 * 1024

# Each case builds its archive from the ``make_zip`` and ``hello_files``
# fixtures, and names words the error message must hold.
CASES = {
    "not a zip": (
        lambda make_zip, hello: b"just some bytes, no archive",
        "not a zip",
    ),
    "no manifest": (
        lambda make_zip, hello: make_zip({"main.py": "x = 1\n"}),
        "no function.toml",
    ),
    "manifest in a nested folder": (
        lambda make_zip, hello: make_zip(
            {"a/function.toml": 'handler = "m.h"\n', "a/m.py": "", "b.txt": ""}
        ),
        "no function.toml",
    ),
    "manifest that is not TOML": (
        lambda make_zip, hello: make_zip(hello(**{"function.toml": "handler ="})),
        "not valid TOML",
    ),
    "timeout out of range": (
        lambda make_zip, hello: make_zip(
            hello(**{"function.toml": 'handler = "main.handler"\ntimeout = 901\n'})
        ),
        "timeout",
    ),
    "timeout as a string": (
        lambda make_zip, hello: make_zip(
            hello(**{"function.toml": 'handler = "main.handler"\ntimeout = "60"\n'})
        ),
        "timeout",
    ),
    "unknown manifest key": (
        lambda make_zip, hello: make_zip(
            hello(**{"function.toml": 'handler = "main.handler"\nruntime = "py"\n'})
        ),
        "runtime",
    ),
    "env value that is not a string": (
        lambda make_zip, hello: make_zip(
            hello(**{"function.toml": 'handler = "main.handler"\n[env]\nN = 1\n'})
        ),
        "env",
    ),
    "handler without a module": (
        lambda make_zip, hello: make_zip(
            hello(**{"function.toml": 'handler = "handler"\n'})
        ),
        "handler",
    ),
    "missing handler file": (
        lambda make_zip, hello: make_zip(
            {"function.toml": 'handler = "app.handler"\n', "main.py": ""}
        ),
        "app.py",
    ),
    "member that climbs out with ..": (
        lambda make_zip, hello: make_zip(hello(**{"../evil.py": "x = 1\n"})),
        "leaves the folder",
    ),
    "member with an absolute path": (
        lambda make_zip, hello: make_zip(hello(**{"/etc/evil.py": "x = 1\n"})),
        "absolute path",
    ),
    "symbolic link member": (
        lambda make_zip, hello: make_zip(hello(), symlinks={"link": "/etc/passwd"}),
        "symbolic link",
    ),
    "over 50 MiB unpacked": (
        lambda make_zip, hello: make_zip(hello(**{"big.bin": b"\0" * (50 * MiB)})),
        "over 50 MiB",
    ),
    "file that is also a folder": (
        lambda make_zip, hello: make_zip(hello(**{"lib": "", "lib/x.py": ""})),
        "a file",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_archive_is_refused_and_nothing_is_stored(
    case, deploy, make_zip, hello_files, nothing_stored
):
    build, words = CASES[case]

    response = deploy("hello", build(make_zip, hello_files))

    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "invalid_package"
    assert words in error["message"]
    nothing_stored()


def test_an_invalid_manifest_names_the_field(deploy, make_zip, hello_files):
    manifest = 'handler = "main.handler"\ntimeout = 0\nmemory = 1\n'

    response = deploy("hello", make_zip(hello_files(**{"function.toml": manifest})))

    fields = response.json["error"]["fields"]
    assert set(fields) == {"timeout", "memory"}


def test_a_member_whose_header_understates_its_size_is_refused(
    deploy, make_zip, hello_files, nothing_stored
):
    archive = bytearray(make_zip(hello_files(**{"data.bin": b"\0" * MiB})))
    _lie_about_size(archive, "data.bin", 10)

    response = deploy("hello", bytes(archive))

    assert response.status_code == 400
    assert "data.bin" in response.json["error"]["message"]
    nothing_stored()


def test_unknown_layers_and_secrets_are_refused_by_name(
    deploy, make_zip, hello_files, nothing_stored
):
    manifest = (
        'handler = "main.handler"\nlayers = ["nope", "gone"]\nsecrets = ["MISSING"]\n'
    )

    response = deploy("hello", make_zip(hello_files(**{"function.toml": manifest})))

    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "invalid_package"
    assert error["fields"] == {
        "layers": "not found: nope, gone",
        "secrets": "not found: MISSING",
    }
    nothing_stored()


def _lie_about_size(archive: bytearray, name: str, size: int) -> None:
    """Rewrite the uncompressed size both headers of member ``name`` declare."""
    with zipfile.ZipFile(io.BytesIO(bytes(archive))) as zf:
        info = zf.getinfo(name)
    local = info.header_offset
    archive[local + 22 : local + 26] = size.to_bytes(4, "little")

    central = archive.find(b"PK\x01\x02")
    while central != -1:
        name_length = int.from_bytes(archive[central + 28 : central + 30], "little")
        if archive[central + 46 : central + 46 + name_length] == name.encode():
            archive[central + 24 : central + 28] = size.to_bytes(4, "little")
            return
        central = archive.find(b"PK\x01\x02", central + 4)
    raise AssertionError(f"no central directory entry for {name}")
