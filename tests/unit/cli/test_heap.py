"""The start-up heap is frozen out of the collector's reach (gateway.cli.settle_heap)."""

from __future__ import annotations

import gc

from gateway.cli.serve import settle_heap


def test_settle_heap_freezes_what_exists_and_later_garbage_is_still_collected() -> None:
    before = gc.get_freeze_count()
    try:
        settle_heap()
        assert gc.get_freeze_count() > before
        frozen = gc.get_freeze_count()
        cycle: list[object] = []
        cycle.append(cycle)  # garbage made after start-up stays collectable
        del cycle
        assert gc.collect() >= 1
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
