"""The long-running processes settle the garbage collector before serving (``settle_gc``)."""

from __future__ import annotations

import gc

from hub.cli import GC_THRESHOLDS, settle_gc


def test_startup_objects_are_frozen_and_young_collections_come_less_often() -> None:
    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_freeze_count() > 1000, "what the process loaded is out of the collector's walk"
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700, "fewer young collections than Python's default"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
