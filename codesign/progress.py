"""Progress of long work: a tqdm bar on a terminal, one line per stage otherwise.

When stderr is a terminal, :func:`progress` shows a tqdm bar that disappears when the stage ends.
When stderr is redirected (a log file, CI), bars with carriage returns would fill it with
garbage, so a stage prints one line when it ends instead::

    codesign: simulate: 26/26 tiles in 28.7 s

Every part of codesign reports progress through this module (``tests/test_progress.py`` checks
that nothing else imports tqdm)::

    for tile in progress(tiles, "simulate", unit="tile"):
        ...
    with progress(total=len(modules), desc="synthesizing periphery (Yosys)", unit="module") as bar:
        for module in modules:
            bar.set_description(f"synthesizing {module}")   # shown on a terminal only
            ...
            bar.update()

``enabled=False`` silences a stage; ``summary=False`` keeps the bar on a terminal but prints no
line otherwise (for a caller that logs its own line per stage, as training does per epoch).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, Optional


def on_terminal() -> bool:
    """Whether stderr is an interactive terminal (bars are shown only then)."""
    return sys.stderr.isatty()


def write(line: str) -> None:
    """Print a line to stderr without breaking a bar in progress."""
    if on_terminal():
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


class Progress:
    """One stage of work: ``update`` as items finish, ``close`` (or leave the ``with``) at the end.

    The end-of-stage line (off a terminal) says ``desc``, items done out of ``total`` and the time;
    it is not printed when the stage ends with an exception (the error says enough).
    """

    def __init__(self, iterable: Optional[Iterable[Any]] = None, desc: str = "", *, total: Optional[int] = None,
                 unit: str = "item", enabled: bool = True, summary: bool = True) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.enabled = enabled
        self.done = 0
        self.started = time.perf_counter()
        self.summary = enabled and summary and not on_terminal()
        self.closed = False
        self.bar = None
        if enabled and on_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr, dynamic_ncols=True)

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("Progress without an iterable: call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update()
        except BaseException:
            self.close(failed=True)
            raise
        self.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        self.close(failed=kind is not None)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def set_description(self, desc: str) -> None:
        """Text in front of the bar (the end-of-stage line keeps the first description)."""
        if self.bar is not None:
            self.bar.set_description(desc, refresh=False)

    def note(self, line: str) -> None:
        """A line for a log (stderr not a terminal), e.g. one per item of a slow stage; a terminal shows
        the bar instead."""
        if self.bar is None and self.enabled:
            print(line, file=sys.stderr, flush=True)

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the bar, e.g. the loss of the last batch (terminal only)."""
        if self.bar is not None:
            self.bar.set_postfix(refresh=False, **values)

    def close(self, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        if self.summary and not failed:
            count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
            unit = self.unit if self.done == 1 and self.total in (None, 1) else plural(self.unit)
            print(f"codesign: {self.desc.strip()}: {count} {unit} in {time.perf_counter() - self.started:.1f} s",
                  file=sys.stderr, flush=True)


def progress(iterable: Optional[Iterable[Any]] = None, desc: str = "", *, total: Optional[int] = None,
             unit: str = "item", enabled: bool = True, summary: bool = True) -> Progress:
    """A :class:`Progress` over ``iterable`` (iterate it) or of ``total`` items (``update`` it)."""
    return Progress(iterable, desc, total=total, unit=unit, enabled=enabled, summary=summary)
