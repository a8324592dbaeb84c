"""Gunicorn settings for Errand's gateway: ``gunicorn -c gunicorn.conf.py``.

Read from the environment:

- ``HOST`` (default ``127.0.0.1``) and ``PORT`` (default ``8000``): where to
  listen. The default keeps the gateway off the network; set ``HOST=0.0.0.0``
  to serve other machines.
- ``WEB_CONCURRENCY``: how many worker processes (default ``2 * CPUs + 1``,
  at most 8).

Options given on gunicorn's command line win over this file.
"""

from __future__ import annotations

import logging
import os
import sys

MAX_WORKERS = 8

# The longest ``GET /jobs/<id>?wait=`` a client may ask for, in seconds.
LONGEST_WAIT_S = 30


def _cpus() -> int:
    """The CPUs this process may run on, which a container may restrict."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# TODO: an IPv6 HOST needs brackets here (and in `make run`'s URL and port
# check); until then only IPv4 addresses and host names work.
bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"]
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * _cpus() + 1, MAX_WORKERS))

# Threads, so that a ``?wait=`` poll parked for up to 30 s holds one thread,
# not a whole worker process.
worker_class = "gthread"
threads = 8

# For gthread workers this is a heartbeat, not a limit on a request: each
# worker's main loop reports in while its threads serve requests, so a
# synchronous invoke may run for its whole manifest timeout (up to 900 s).
# It only needs to exceed the longest pause of that loop; keep it above the
# longest wait anyway, in case someone switches to the sync worker class.
timeout = 2 * LONGEST_WAIT_S

# On SIGTERM, requests in progress get this long. Short, so that the gateway
# stops within the 5 s a Procfile runner (honcho) gives before SIGKILL; a
# request cut short is the client's to retry.
graceful_timeout = 4

# A ``?wait=`` poller asks again at once; keep its connection a little.
keepalive = 5

accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# Gunicorn's control socket defaults to one path per user, which two
# gateways on one machine (a test run beside ``make run``) would fight over.
control_socket_disable = True


def on_starting(server) -> None:
    """Send the gateway's own log lines (a job enqueued, ...) to stderr.

    Gunicorn configures only its own loggers; this runs once in the master,
    before it forks, so every worker inherits the handler.
    """
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
