"""One running stack for the end-to-end tests of a module.

The stack is module-scoped, so pytest sets it up before any function-scoped
fixture of the first test, the stray-process guard included: the guard's
snapshot of child processes then already holds the gateway and the workers,
and they are not counted as strays of the test. The stack is stopped after
the module's last test, when no guard is watching; :meth:`Stack.stop`
waits for every process it started, and kills any that does not exit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack import GREETER_TOKEN, Stack

EXAMPLES = ("hello", "flaky", "slow", "greeter", "receipt")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("stack"))
    try:
        stack.start()
        stack.errand("layers", "deploy", "functions/_layers/common")
        stack.errand("secrets", "set", "GREETER_TOKEN", input=GREETER_TOKEN)
        for name in EXAMPLES:
            stack.errand("deploy", f"functions/{name}")
        yield stack
    finally:
        stack.stop()
