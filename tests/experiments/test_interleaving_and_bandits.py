"""Team-draft interleaving and Thompson-sampling allocation, checked by simulation."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats as sps

from experiments import bandits, interleaving


def test_team_draft_takes_turns_and_never_repeats_an_item():
    rng = random.Random(1)
    a, b = list("abcdefgh"), list("bdfhaceg")
    for _ in range(200):
        merged = interleaving.team_draft(a, b, k=6, rng=rng)
        assert len(set(merged.items)) == len(merged.items) == 6
        assert abs(merged.teams.count("A") - merged.teams.count("B")) <= 1
        # Each team's items appear in that team's ranking order.
        for team, ranking in (("A", a), ("B", b)):
            picked = [i for i, t in zip(merged.items, merged.teams, strict=True) if t == team]
            assert picked == sorted(picked, key=ranking.index)


def simulate(rng, *, good_items, reps):
    """Users click items in ``good_items`` with probability .5, others with .1."""
    ranker_a = list(range(20))
    ranker_b = list(range(19, -1, -1))
    outcomes = []
    for _ in range(reps):
        merged = interleaving.team_draft(ranker_a, ranker_b, k=10, rng=rng)
        clicks = [i for i in merged.items if rng.random() < (0.5 if i in good_items else 0.1)]
        outcomes.append(interleaving.credit(merged, clicks))
    return interleaving.interleaving_test(outcomes)


def test_the_ranker_that_puts_liked_items_first_wins():
    result = simulate(random.Random(2), good_items=set(range(5)), reps=400)
    assert result.significant and result.wins_a > result.wins_b


def test_equally_good_rankers_are_preferred_about_alpha_of_the_time():
    rng = random.Random(3)
    trials = 300
    # Both rankers hold the liked items at mirrored positions: no true preference.
    false_positives = sum(simulate(rng, good_items={0, 19}, reps=60).significant for _ in range(trials))
    assert false_positives / trials <= 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5


def test_the_sign_test_is_scipys_binomial_test():
    result = interleaving.interleaving_test(["A"] * 30 + ["B"] * 18 + [None] * 5)
    assert result.p_value == pytest.approx(sps.binomtest(30, 48, 0.5).pvalue)
    assert result.ties == 5


def test_probability_best_matches_a_brute_force_monte_carlo():
    arms = [bandits.Arm("a", 30, 100), bandits.Arm("b", 40, 100), bandits.Arm("c", 10, 50)]
    rng = np.random.default_rng(99)
    draws = np.column_stack([rng.beta(1 + a.successes, 1 + a.trials - a.successes, 200000) for a in arms])
    brute = np.bincount(draws.argmax(axis=1), minlength=3) / 200000
    assert bandits.probability_best(arms, draws=200000, seed=1) == pytest.approx(brute.tolist(), abs=0.01)


def test_every_arm_keeps_its_minimum_share_and_shares_add_up():
    arms = [bandits.Arm("a", 300, 1000), bandits.Arm("b", 100, 1000), bandits.Arm("c", 90, 1000)]
    allocation = bandits.thompson_allocation(arms, min_share=0.1)
    assert sum(allocation.values()) == pytest.approx(1)
    assert min(allocation.values()) >= 0.1
    assert allocation["a"] == pytest.approx(0.8, abs=0.01)
    with pytest.raises(ValueError):
        bandits.thompson_allocation(arms, min_share=0.5)


def test_a_simulated_bandit_shifts_traffic_to_the_best_arm():
    rng = np.random.default_rng(4)
    truth = {"a": 0.05, "b": 0.10, "c": 0.04}
    counts = {k: [0, 0] for k in truth}
    history = []
    for day in range(30):
        arms = [bandits.Arm(k, s, n) for k, (s, n) in counts.items()]
        allocation = bandits.thompson_allocation(arms, min_share=0.05, seed=day)
        history.append(allocation)
        for _ in range(500):
            arm = bandits.choose_arm(allocation, rng.random())
            counts[arm][1] += 1
            counts[arm][0] += rng.random() < truth[arm]
    assert history[-1]["b"] > 0.8
    assert min(history[-1].values()) >= 0.05
