"""``orchest operator`` tunes the garbage collector before it starts kopf."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orchest_operator.cli.operator import tune_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_objects_are_frozen_and_young_collections_are_rarer(restored_gc: None) -> None:
    before = gc.get_freeze_count()
    tune_garbage_collector()
    assert gc.get_freeze_count() > before, "what exists at start-up is out of the collector's sight"
    assert gc.get_threshold() == (10_000, 10, 10)
