"""Unpacking versions to run, and building an attempt from a function id."""

from __future__ import annotations

import stat
import threading

import pytest

import settings as settings_module
from errors import ConfigError, NotFound
from runtime import invoke, packages
from runtime.executor import KILL_GRACE_S


def test_a_version_is_unpacked_once_into_a_folder_named_by_its_sha256(
    deploy, settings, hello_files
):
    sha256 = deploy("hello", hello_files()).json["sha256"]
    version = packages.current_version("hello")

    folder = packages.checkout(version, settings)
    again = packages.checkout(version, settings)

    assert folder == again == settings.packages_dir / sha256
    assert sorted(path.name for path in folder.iterdir()) == [
        "function.toml",
        "main.py",
    ]
    assert stat.S_IMODE((folder / "main.py").stat().st_mode) == 0o444


def test_a_package_in_a_top_folder_unpacks_to_the_folder_with_its_manifest(
    deploy, settings, make_zip, hello_files
):
    files = {f"hello/{name}": content for name, content in hello_files().items()}
    deploy("hello", make_zip(files))

    folder = packages.checkout(packages.current_version("hello"), settings)

    assert (folder / "function.toml").is_file()
    assert (folder / "main.py").is_file()


def test_threads_checking_out_at_once_share_one_complete_folder(
    deploy, settings, hello_files
):
    deploy("hello", hello_files(**{f"lib/m{n}.py": "x = 1\n" for n in range(50)}))
    version = packages.current_version("hello")
    folders, start = [], threading.Barrier(8)

    def check_out() -> None:
        start.wait()
        folders.append(packages.checkout(version, settings))

    threads = [threading.Thread(target=check_out) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(folders)) == 1 and len(folders) == 8
    assert len(list((folders[0] / "lib").iterdir())) == 50
    assert [path.name for path in settings.packages_dir.iterdir()] == [version.sha256]


def test_an_attempt_gets_the_version_its_layers_and_its_secrets(
    deploy, deploy_layer, set_secret, settings, make_zip, hello_files
):
    set_secret("API_TOKEN", "s3cret")
    deploy_layer("common", make_zip({"common.py": ""}))
    manifest = (
        'handler = "main.handler"\ntimeout = 30\nmemory = 512\n'
        'layers = ["common"]\nsecrets = ["API_TOKEN"]\n[env]\nMODE = "test"\n'
    )
    deploy("hello", hello_files(**{"function.toml": manifest}))

    spec, version = invoke.prepare(
        "hello", {"a": 1}, job_id="job-1", attempt=3, settings=settings
    )

    assert version == 1
    assert spec.function_id == "hello" and spec.version == 1
    assert spec.handler == "main.handler"
    assert spec.event == {"a": 1}
    assert spec.timeout_s == 30
    assert spec.memory_mb == 512
    assert spec.env == {"MODE": "test", "API_TOKEN": "s3cret"}
    assert (spec.code_dir / "function.toml").is_file()
    assert [(path / "common.py").is_file() for path in spec.layer_dirs] == [True]
    assert (spec.job_id, spec.attempt) == ("job-1", 3)


def test_preparing_an_unknown_function_is_not_found(settings, database):
    with pytest.raises(NotFound, match="no function 'nope'"):
        invoke.prepare("nope", {}, settings=settings)


def test_the_timeout_is_capped_so_the_attempt_ends_inside_its_lease(
    deploy, settings_env, hello_files
):
    deploy("hello", hello_files(**{"function.toml": 'handler = "main.handler"\n'}))
    config = settings_module.load({**settings_env, "ERRAND_VISIBILITY_TIMEOUT": "6"})

    spec, _ = invoke.prepare("hello", {}, settings=config)

    assert spec.timeout_s + KILL_GRACE_S < 6
    assert spec.timeout_s == 3


@pytest.mark.parametrize(
    "manifest_s, lease_s, expected_s",
    [(60, 1350, 60), (900, 1350, 900), (900, 600, 600 - KILL_GRACE_S - 60)],
)
def test_a_manifest_timeout_well_inside_the_lease_is_kept(
    manifest_s, lease_s, expected_s
):
    assert invoke.attempt_timeout_s(manifest_s, lease_s) == expected_s


def test_a_lease_too_short_for_any_attempt_is_a_configuration_error():
    with pytest.raises(ConfigError, match="visibility timeout"):
        invoke.attempt_timeout_s(10, 3)
