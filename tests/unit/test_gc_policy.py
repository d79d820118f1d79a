"""backbone.gc_policy: the fold loops' collector thresholds, restored afterwards."""

from __future__ import annotations

import gc

import pytest

from backbone.gc_policy import FOLD_THRESHOLDS, fewer_collections


@pytest.fixture(autouse=True)
def _restore_thresholds():  # noqa: ANN202 - a fixture
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_body_runs_with_the_fold_thresholds_and_the_previous_ones_come_back() -> None:
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == FOLD_THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)


def test_thresholds_come_back_when_the_body_raises() -> None:
    gc.set_threshold(500, 5, 5)
    with pytest.raises(RuntimeError), fewer_collections((1000, 2, 3)):
        assert gc.get_threshold() == (1000, 2, 3)
        raise RuntimeError("boom")
    assert gc.get_threshold() == (500, 5, 5)


def test_nested_uses_restore_in_order() -> None:
    gc.set_threshold(700, 10, 10)
    with fewer_collections((2000, 10, 10)):
        with fewer_collections():
            assert gc.get_threshold() == FOLD_THRESHOLDS
        assert gc.get_threshold() == (2000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
