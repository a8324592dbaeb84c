"""Start Errand on this machine: what ``make run`` does, in the project's venv.

On first use it makes the data folder and an API key, kept in
``<data dir>/api-key`` (mode 0600) for the next run and for your shell. It
then starts the Procfile's gateway and worker with honcho, deploys the
examples in ``functions/`` (with the layers and the demo secrets they need),
and prints how to call them. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import settings
from app import new_api_key
from client import wait_until_healthy
from errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXAMPLES = ROOT / "functions"
KEY_FILE = "api-key"

# Values for the secrets the examples read; a demo needs no real ones.
DEMO_SECRETS = {"GREETER_TOKEN": "demo-greeter-token"}

# How long the gateway gets to answer its health check after starting.
START_TIMEOUT_S = 30.0

# How long honcho gets to stop its processes; it kills them itself after 5 s.
STOP_TIMEOUT_S = 15.0


def main() -> int:
    os.chdir(ROOT)
    try:
        config = settings.load()
    except ConfigError as exc:
        print(f"errand: {exc.message}", file=sys.stderr)
        return 2

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    if not _port_is_free(host, int(port)):
        print(
            f"errand: port {port} on {host} is taken (is Errand running already?); "
            "choose another with PORT=...",
            file=sys.stderr,
        )
        return 1

    config.data_dir.mkdir(parents=True, exist_ok=True)
    key, key_file = _api_key(config.data_dir)
    url = f"http://{_client_host(host)}:{port}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ERRAND_DATA_DIR": str(config.data_dir),
        "ERRAND_API_KEY": key,
        "ERRAND_URL": url,
    }

    # Each of these stops everything; SIGINT too, even when it was ignored
    # at start, as a shell does for the commands it starts in the background.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)

    # honcho gets a process group of its own, so that Ctrl-C reaches it once,
    # from us, whatever we are doing at that moment.
    honcho = subprocess.Popen(
        [BIN / "honcho", "start", "--port", port], env=env, process_group=0
    )
    try:
        _wait_until_healthy(url, honcho)
        _deploy_examples(env)
        _print_tour(url, key_file)
        honcho.wait()
    except KeyboardInterrupt:
        pass
    except _StartFailed as exc:
        print(f"errand: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop(honcho)
    # honcho answers a signal with 130 or 143, and a process that fails with
    # that process's status.
    return 0 if honcho.returncode in (0, 130, 143) else 1


class _StartFailed(Exception):
    """Raised when the gateway or the worker does not come up."""


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a gateway bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _api_key(data_dir: Path) -> tuple[str, Path | None]:
    """The key the gateway accepts and the file it is kept in.

    A key in the environment (``ERRAND_API_KEY``) wins over the saved one;
    without either, a key is made and saved.
    """
    if os.environ.get("ERRAND_API_KEY"):
        print("Using the API key in ERRAND_API_KEY.")
        return os.environ["ERRAND_API_KEY"], None

    path = data_dir / KEY_FILE
    if path.exists():
        return path.read_text().strip(), path

    key = new_api_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    print(f"Made an API key, saved in {path} (mode 0600):\n\n  {key}\n")
    return key, path


def _wait_until_healthy(url: str, honcho: subprocess.Popen) -> None:
    if wait_until_healthy(url, lambda: honcho.poll() is None, START_TIMEOUT_S):
        return
    if honcho.poll() is not None:
        raise _StartFailed("the gateway or the worker stopped while starting")
    raise _StartFailed(
        f"the gateway did not answer at {url} within {START_TIMEOUT_S:.0f} s"
    )


def _deploy_examples(env: dict[str, str]) -> None:
    """Layers and secrets first, then every function in ``functions/``.

    An example that fails to deploy is reported, and the rest go on.
    """
    steps = [(["layers", "deploy", _relative(path)], None) for path in _layers()]
    steps += [(["secrets", "set", name], value) for name, value in DEMO_SECRETS.items()]
    steps += [(["deploy", _relative(path)], None) for path in _functions()]
    for args, stdin in steps:
        done = subprocess.run(
            [BIN / "errand", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
        )
        # The command's few lines of output, on one line: "function hello, ...".
        lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
        said = ", ".join(line for line in lines if not line.startswith("sha256"))
        print(f"errand {' '.join(args)}: {said or done.stderr.strip()}", flush=True)


def _layers() -> list[Path]:
    return sorted(path for path in (EXAMPLES / "_layers").glob("*") if path.is_dir())


def _functions() -> list[Path]:
    return sorted(toml.parent for toml in EXAMPLES.glob("*/function.toml"))


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _print_tour(url: str, key_file: Path | None) -> None:
    auth = '-H "Authorization: Bearer $ERRAND_API_KEY"'
    key = f"  export ERRAND_API_KEY=$(cat {key_file})\n" if key_file else ""
    print(
        f"""
Errand is up at {url}; Ctrl-C here stops it. In another shell:

  export ERRAND_URL={url}
{key}  curl -sS -X POST "$ERRAND_URL/functions/receipt/invoke-async" {auth} \\
    -H "Content-Type: application/json" -d '{{"event": {{"orderId": "ord_123"}}}}'
  curl -sS "$ERRAND_URL/jobs/JOB_ID?wait=10" {auth}

JOB_ID is the jobId the first curl printed. README.md has a longer tour.
""",
        flush=True,
    )


def _stop(honcho: subprocess.Popen) -> None:
    """Have honcho stop its processes, and wait for it to finish."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    if honcho.poll() is None:
        honcho.send_signal(signal.SIGINT)
    try:
        honcho.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        honcho.kill()
        honcho.wait()


if __name__ == "__main__":
    sys.exit(main())
