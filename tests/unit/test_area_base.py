"""The watermark rule the incremental listings share (areas/base.py)."""

from __future__ import annotations

from exporter.areas.base import read_since

WINDOW_START = 1_000_000.0


def test_the_first_load_reads_the_window() -> None:
    assert read_since(WINDOW_START, None, 600.0) == WINDOW_START
    assert read_since(WINDOW_START, None, 600.0, [WINDOW_START - 5000]) == WINDOW_START


def test_later_cycles_read_from_the_watermark_minus_the_overlap() -> None:
    assert read_since(WINDOW_START, WINDOW_START + 10_000, 600.0) == WINDOW_START + 9_400


def test_an_older_pending_item_reaches_further_back_but_never_before_the_window() -> None:
    assert read_since(WINDOW_START, WINDOW_START + 10_000, 600.0, [WINDOW_START + 2_000, WINDOW_START + 9_900]) \
        == WINDOW_START + 2_000
    assert read_since(WINDOW_START, WINDOW_START + 10_000, 600.0, [WINDOW_START - 1]) == WINDOW_START
    assert read_since(WINDOW_START, WINDOW_START + 100, 600.0) == WINDOW_START
