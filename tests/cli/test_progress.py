"""The terminal progress line of ``soci-indexer index``."""

from __future__ import annotations

import io

from soci_indexer.cli.progress import TerminalProgress, for_terminal

MIB = 1024 * 1024


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_progress_is_drawn_when_stderr_is_not_a_terminal() -> None:
    assert for_terminal(io.StringIO()) is None


def test_the_line_sums_every_layer_started_so_far() -> None:
    screen = FakeTerminal()
    display = TerminalProgress(screen, interval=0, delay=0)
    display("sha256:a", 2 * MIB, 2 * MIB)
    display("sha256:b", 1 * MIB, 6 * MIB)
    assert screen.getvalue().endswith("indexing: 1/2 layers, 3.0/8.0 MiB (37%)")


def test_closing_clears_the_line() -> None:
    screen = FakeTerminal()
    display = TerminalProgress(screen, interval=0, delay=0)
    display("sha256:a", 1, 2)
    display.close()
    assert screen.getvalue().endswith("\r\x1b[K")


def test_short_runs_draw_nothing() -> None:
    screen = FakeTerminal()
    display = TerminalProgress(screen, delay=60)
    display("sha256:a", 1, 2)
    display.close()
    assert screen.getvalue() == ""
