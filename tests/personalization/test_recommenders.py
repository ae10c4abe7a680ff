import numpy as np
import pytest

from personalization import recommenders


def test_trending_sums_weights_and_halves_them_every_half_life():
    model = recommenders.trending_fit(
        item_index=np.array([0, 1, 1, 2]),
        weights=np.array([4.0, 1.0, 1.0, 3.0]),
        age_days=np.array([7.0, 0.0, 0.0, 0.0]),
        n_items=4,
        half_life_days=7.0,
        keep=10,
    )
    # item 0: 4 * 0.5 = 2; item 1: 2; item 2: 3; item 3 never seen is left out.
    assert model.item_index.tolist() == [2, 0, 1]
    assert model.scores.tolist() == pytest.approx([3.0, 2.0, 2.0])


def test_trending_without_decay_counts_raw_weights_and_keeps_the_best_only():
    model = recommenders.trending_fit(
        item_index=np.array([0, 1, 1, 2, 2, 2]),
        weights=np.ones(6),
        age_days=np.full(6, 100.0),
        n_items=3,
        half_life_days=None,
        keep=2,
    )
    assert model.item_index.tolist() == [2, 1]
    assert model.top(1, exclude={2}) == [(1, 2.0)]


def test_trending_refuses_a_non_positive_half_life():
    with pytest.raises(ValueError):
        recommenders.trending_fit(
            item_index=np.array([0]),
            weights=np.ones(1),
            age_days=np.zeros(1),
            n_items=1,
            half_life_days=0,
            keep=1,
        )
