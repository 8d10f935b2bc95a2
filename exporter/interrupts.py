"""SIGINT and SIGTERM for the one-shot commands (`--once`, `digest`): a one-line message, no traceback.

While a one-shot command runs, either signal raises `Interrupted` in the main thread (a BaseException,
so no `except Exception` on the way, such as the refresh loop's guard, mistakes it for a failed
refresh). The command cleans up in its `finally` blocks and exits with the conventional code of a
process ended by that signal, 128 + its number: 130 for SIGINT, 143 for SIGTERM. A second signal during
the clean-up is ignored. The long-running server handles both signals itself (a graceful stop, exit 0).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A one-shot command was stopped by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `Interrupted` (once); the old handlers come back after."""
    raised = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_interruptible(command: Callable[[], int], what: str) -> int:
    """`command()`'s exit code; if a signal stops it, one line on stderr and 128 + the signal number."""
    try:
        with interruptible():
            return command()
    except Interrupted as stop:
        print(f"azdo-exporter: {what} stopped by {stop}; exiting with {stop.exit_code}", file=sys.stderr,
              flush=True)
        return stop.exit_code
