"""A one-line progress display on a terminal for ``soci-indexer index``.

Layers are indexed several at a time, so the line shows the total over all
layers started so far. Nothing is drawn when stderr is not a terminal (logs,
pipes, CI) or for runs shorter than a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

MIB = 1024 * 1024


class TerminalProgress:
    """Callable as the pipeline's ``progress(layer_digest, bytes_done, bytes_total)``."""

    def __init__(self, stream: TextIO, interval: float = 0.2, delay: float = 1.0) -> None:
        self._stream = stream
        self._interval = interval
        self._started = time.monotonic()
        self._next_draw = self._started + delay
        self._layers: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._drawn = False

    def __call__(self, layer: str, done: int, total: int) -> None:
        with self._lock:
            self._layers[layer] = (done, total)
            now = time.monotonic()
            if now >= self._next_draw:
                self._next_draw = now + self._interval
                self._draw()

    def _draw(self) -> None:
        done = sum(d for d, _ in self._layers.values())
        total = sum(t for _, t in self._layers.values())
        finished = sum(1 for d, t in self._layers.values() if d >= t)
        percent = 100 * done // total if total else 100
        line = (
            f"indexing: {finished}/{len(self._layers)} layers, "
            f"{done / MIB:.1f}/{total / MIB:.1f} MiB ({percent}%)"
        )
        self._stream.write(f"\r\x1b[K{line}")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Clear the line so what follows starts on a clean one."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def for_terminal(stream: TextIO) -> TerminalProgress | None:
    """A display when ``stream`` is a terminal, else None (no progress at all)."""
    return TerminalProgress(stream) if stream.isatty() else None


@contextmanager
def shown_on(stream: TextIO) -> Iterator[TerminalProgress | None]:
    """``for_terminal(stream)`` for the length of a block, closed however the block ends."""
    display = for_terminal(stream)
    try:
        yield display
    finally:
        if display is not None:
            display.close()
