"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008) and its significance test. Pure.

Two rankers (A and B) are merged into one list: in each round the team with fewer picks
(a coin flip on ties) adds its highest-ranked item not yet shown. Clicks credit the team
that contributed the clicked item; per impression the ranker with more credited clicks
wins. Over impressions with a winner, a two-sided binomial (sign) test of wins against 1/2
says whether one ranker is preferred. It needs far fewer users than an A/B test because
every user compares both rankers at once.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from scipy import stats as sps


@dataclass(frozen=True)
class Interleaved:
    items: list[Hashable]
    teams: list[str]  # "A" or "B", one per item


def team_draft(a: Sequence[Hashable], b: Sequence[Hashable], *, k: int, rng: random.Random) -> Interleaved:
    items: list[Hashable] = []
    teams: list[str] = []
    shown: set[Hashable] = set()
    picks = {"A": 0, "B": 0}
    sources = {"A": list(a), "B": list(b)}
    cursor = {"A": 0, "B": 0}

    def next_from(team: str) -> Hashable | None:
        ranking = sources[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in shown:
            cursor[team] += 1
        return ranking[cursor[team]] if cursor[team] < len(ranking) else None

    while len(items) < k:
        if picks["A"] != picks["B"]:
            team = "A" if picks["A"] < picks["B"] else "B"
        else:
            team = "A" if rng.random() < 0.5 else "B"
        item = next_from(team)
        if item is None:
            team = "B" if team == "A" else "A"
            item = next_from(team)
            if item is None:
                break
        items.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return Interleaved(items=items, teams=teams)


def credit(interleaved: Interleaved, clicked: Iterable[Hashable]) -> str | None:
    """The winning team of one impression ("A", "B") or None for a tie (including no clicks)."""
    team_of = dict(zip(interleaved.items, interleaved.teams, strict=True))
    counts = {"A": 0, "B": 0}
    for item in clicked:
        if item in team_of:
            counts[team_of[item]] += 1
    if counts["A"] == counts["B"]:
        return None
    return "A" if counts["A"] > counts["B"] else "B"


@dataclass(frozen=True)
class InterleavingResult:
    wins_a: int
    wins_b: int
    ties: int
    preference: float  # share of decided impressions won by A, minus 1/2
    p_value: float
    significant: bool


def interleaving_test(outcomes: Iterable[str | None], *, alpha: float = 0.05) -> InterleavingResult:
    outcomes = list(outcomes)
    wins_a = sum(1 for o in outcomes if o == "A")
    wins_b = sum(1 for o in outcomes if o == "B")
    decided = wins_a + wins_b
    p = sps.binomtest(wins_a, decided, 0.5).pvalue if decided else 1.0
    return InterleavingResult(
        wins_a=wins_a,
        wins_b=wins_b,
        ties=len(outcomes) - decided,
        preference=(wins_a / decided - 0.5) if decided else 0.0,
        p_value=float(p),
        significant=bool(p < alpha),
    )
