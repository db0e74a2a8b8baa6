"""A progress and cancellation hook for the permutation and simulation loops of ``spatialpath.gr``.

The loops report ``(done, total, desc)`` between batches through :func:`report`. Inside
:func:`progress_hook`, a callback receives these reports in the thread that runs the statistic;
when it returns True the statistic stops at that point with :class:`Cancelled`. Outside, the
reports cost one context-variable lookup. GUIs (the napari plugin's neighbourhood widget) use it
to show progress and cancel a long run between batches.

Examples
--------
>>> seen = []
>>> with progress_hook(lambda done, total, desc: seen.append((done, total)) or done >= 2):
...     try:
...         for i in range(1, 5):
...             report(i, 4, "demo")
...     except Cancelled as stop:
...         print(stop)
cancelled after 2 of 4 (demo)
>>> seen
[(1, 4), (2, 4)]
>>> report(3, 4, "no hook: nothing happens")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["Cancelled", "ProgressCallback", "progress_hook", "report"]

#: ``callback(done, total, desc)``; a True return value cancels the running statistic.
ProgressCallback = Callable[[int, int, str], Any]

_HOOK: ContextVar[ProgressCallback | None] = ContextVar("spatialpath_gr_progress_hook", default=None)


class Cancelled(Exception):
    """A statistic stopped because its progress callback asked to."""


@contextmanager
def progress_hook(callback: ProgressCallback | None) -> Iterator[None]:
    """Send the progress reports of the statistics run inside the block to ``callback``.

    The hook is a context variable: it holds in the thread (or task) that entered the block and
    does not leak into other threads. Hooks nest; the innermost one is called.
    """
    token = _HOOK.set(callback)
    try:
        yield
    finally:
        _HOOK.reset(token)


def report(done: int, total: int, desc: str = "") -> None:
    """Report progress to the current hook; raise :class:`Cancelled` when it returns True."""
    callback = _HOOK.get()
    if callback is not None and callback(int(done), int(total), str(desc)):
        raise Cancelled(f"cancelled after {int(done)} of {int(total)} ({desc})")
