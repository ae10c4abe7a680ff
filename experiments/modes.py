"""Interleaving and bandit experiments: serving, crediting, allocation and their analyses.

Services for the two kinds of experiment that are not plain A/B tests (the maths lives in
the pure modules ``interleaving.py`` and ``bandits.py``):

- Interleaving: on a placement, the control's recommender (team A) and the treatment's
  (team B) are merged into one team-draft list. Each result's recommendation id is
  ``{token}.{team}{rank}``; a tracked ``click`` event carrying it in
  ``properties.recommendation_id`` credits that team. Per profile, the team with more
  credited clicks wins; a two-sided sign (binomial) test of wins against 1/2 decides.
- Bandit: each assignment request draws an arm from the latest Thompson-sampling allocation
  (every arm keeps at least ``bandit_min_share``). An exposure is a success when the profile
  performs the primary metric's event within its window (24 h by default) afterwards and
  before its next exposure, so one conversion is one success. A periodic task recomputes
  the posteriors and stores the allocation, charted over time.

Both break their results down by the experiment's segments (membership at the profile's
first exposure, as for A/B tests).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from personalization.models import Event, Profile, Segment, SegmentMembership

from . import bandits, hashing, interleaving
from .models import BanditAllocation, Experiment, ExperimentMetric, Exposure, InterleavedImpression, Variant

DEFAULT_REWARD_WINDOW_HOURS = 24
TEAMS = ("A", "B")


# --- Interleaving ----------------------------------------------------------------------------


def interleaving_recommenders(*, experiment: Experiment) -> tuple[str, str] | None:
    """The recommender names of team A (the control) and team B (the first treatment)."""
    variants = list(experiment.variants.all()[:2])
    names = tuple(v.payload.get("recommender") for v in variants)
    if len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        return None
    return names  # type: ignore[return-value]


def recommendation_id(token: str, team: str, rank: int) -> str:
    return f"{token}.{team}{rank}"


def recommendation_id_parse(value: str) -> tuple[str, str] | None:
    """(token, team) of an interleaved recommendation id, or None for any other id."""
    if not isinstance(value, str) or len(value) < 35 or value[32] != "." or value[33] not in TEAMS:
        return None
    return value[:32], value[33]


def interleaving_serve(
    *,
    experiment_key: str,
    placement_key: str,
    user_id: str | None,
    anonymous_id: str | None,
    k: int,
    exclude_consumed: bool = True,
    now: datetime | None = None,
):
    """The team-draft interleaved list of the experiment's two recommenders for one request.

    Called by serving for a placement with a running experiment. Returns a
    ``personalization.serving.Served``, or None when the experiment is not an interleaving
    one or the request is outside it (no id, traffic, targeting, a recommender without a
    model): the placement then serves as usual. Records the impression with the team of
    every item.
    """
    from personalization import serving

    from .services import _profile_get_or_create, targeting_matches

    if not (user_id or anonymous_id):
        return None
    experiment = Experiment.objects.filter(
        key=experiment_key, status=Experiment.Status.RUNNING, kind=Experiment.Kind.INTERLEAVING
    ).first()
    if experiment is None:
        return None
    names = interleaving_recommenders(experiment=experiment)
    if names is None:
        return None
    if hashing.bucket_hash(experiment.seed, user_id or anonymous_id, 2) >= experiment.traffic_percent / 100:
        return None
    profile = _profile_get_or_create(user_id=user_id, anonymous_id=anonymous_id)
    if not targeting_matches(experiment=experiment, profile=profile):
        return None
    lists = []
    for name in names:
        try:
            lists.append(
                serving.recommendations_get(
                    user_id=user_id,
                    anonymous_id=anonymous_id,
                    k=k,
                    recommender_name=name,
                    placement_key=placement_key,
                    exclude_consumed=exclude_consumed,
                )
            )
        except serving.ServingError:
            return None
    token = uuid.uuid4().hex
    by_item = {r.item.pk: r for served in reversed(lists) for r in served.results}
    merged = interleaving.team_draft(
        [r.item.pk for r in lists[0].results],
        [r.item.pk for r in lists[1].results],
        k=k,
        rng=random.Random(token),
    )
    shown = list(zip(merged.items, merged.teams, strict=True))
    results = [
        dataclasses.replace(
            by_item[item_id],
            rank=rank,
            recommendation_id=recommendation_id(token, team, rank),
            recommender=names[TEAMS.index(team)],
        )
        for rank, (item_id, team) in enumerate(shown, start=1)
    ]
    InterleavedImpression.objects.create(
        experiment=experiment,
        phase=experiment.phase,
        profile=profile,
        token=token,
        items=[[item_id, team] for item_id, team in shown],
        timestamp=now or timezone.now(),
    )
    return dataclasses.replace(
        lists[0],
        results=results,
        experiment={"key": experiment.key, "kind": experiment.kind, "variant": None, "in_experiment": True},
    )


def interleaving_analysis(
    *, experiment: Experiment, as_of: datetime, segments: Sequence[tuple[Segment, str]] = ()
) -> dict:
    """Credited clicks per team, per-profile wins and the sign test, as of ``as_of``, and the
    same test within each of ``segments`` ((segment, origin) pairs).

    Only clicks on ids of impressions recorded for this experiment phase count, each
    recommendation id at most once (a double click is one click), and only when made by
    the profile the list was shown to.
    """
    shown = InterleavedImpression.objects.filter(
        experiment=experiment, phase=experiment.phase, timestamp__lte=as_of
    )
    impressions = dict(shown.values_list("token", "profile_id"))
    first = (
        InterleavedImpression.objects.filter(experiment=experiment, phase=experiment.phase)
        .order_by("timestamp")
        .values_list("timestamp", flat=True)
        .first()
    )
    credits: dict[int, Counter] = {profile_id: Counter() for profile_id in impressions.values()}
    daily: dict[str, Counter] = {}
    seen: set[str] = set()
    if first is not None:
        clicks = (
            Event.objects.filter(
                type=Event.Type.CLICK,
                timestamp__gte=first,
                timestamp__lte=as_of,
                properties__has_key="recommendation_id",
            )
            .order_by("timestamp")
            .values_list("profile_id", "properties__recommendation_id", "timestamp")
        )
        for profile_id, rid, at in clicks.iterator(chunk_size=5000):
            parsed = recommendation_id_parse(rid)
            if parsed is None or rid in seen or impressions.get(parsed[0]) != profile_id:
                continue
            seen.add(rid)
            credits[profile_id][parsed[1]] += 1
            daily.setdefault(at.date().isoformat(), Counter())[parsed[1]] += 1
    outcomes = {
        profile_id: None if c["A"] == c["B"] else ("A" if c["A"] > c["B"] else "B")
        for profile_id, c in credits.items()
    }
    test = interleaving.interleaving_test(outcomes.values(), alpha=experiment.alpha)
    by_segment = []
    if segments:
        first_seen = dict(
            shown.values("profile_id").annotate(first=Min("timestamp")).values_list("profile_id", "first")
        )
        members = _members_at(segments, first_seen, shown.values("profile_id"))
        for segment, origin in segments:
            within = interleaving.interleaving_test(
                [outcomes[p] for p in members.get(segment.pk, ())], alpha=experiment.alpha
            )
            by_segment.append(
                {
                    **_segment_head(segment, origin),
                    "profiles": len(members.get(segment.pk, ())),
                    **dataclasses.asdict(within),
                }
            )
    return {
        "impressions": len(impressions),
        "profiles": len(credits),
        "clicks_a": sum(c["A"] for c in credits.values()),
        "clicks_b": sum(c["B"] for c in credits.values()),
        **dataclasses.asdict(test),
        "daily": [[day, counts["A"], counts["B"]] for day, counts in sorted(daily.items())],
        "segments": by_segment,
    }


def _segment_head(segment: Segment, origin: str) -> dict:
    return {"id": segment.pk, "key": segment.key, "name": segment.name, "origin": origin}


def _members_at(
    segments: Sequence[tuple[Segment, str]], first_seen: dict[int, datetime], profiles
) -> dict[int, set[int]]:
    """Segment id -> the profiles that were members when first shown the experiment (a stay
    entered at or before ``first_seen[profile]`` and not exited by then), as for A/B tests:
    a profile the experiment itself moved into a segment is left out."""
    out: dict[int, set[int]] = {}
    stays = SegmentMembership.objects.filter(
        segment_id__in=[segment.pk for segment, _ in segments], profile_id__in=profiles
    ).values_list("segment_id", "profile_id", "entered_at", "exited_at")
    for segment_id, profile_id, entered, exited in stays.iterator(chunk_size=5000):
        first = first_seen.get(profile_id)
        if first is not None and entered <= first and (exited is None or exited > first):
            out.setdefault(segment_id, set()).add(profile_id)
    return out


def interleaving_verdict(*, result: dict, names: tuple[str, str], alpha: float) -> tuple[str, str]:
    decided = result["wins_a"] + result["wins_b"]
    if not decided:
        return "No profile has clicked an interleaved result yet.", "neutral"
    share_b = result["wins_b"] / decided
    text = (
        f"{names[1]} (B) won {result['wins_b']} of {decided} profiles with a preference "
        f"({share_b * 100:.1f}%) against {names[0]} (A); sign test p = {result['p_value']:.2g}"
    )
    if result["p_value"] < alpha:
        better = "B" if share_b > 0.5 else "A"
        winner = names[1] if better == "B" else names[0]
        return f"{text}: users prefer {winner}.", "good" if better == "B" else "bad"
    return f"{text}: no significant preference yet.", "neutral"


# --- Bandits ---------------------------------------------------------------------------------


def bandit_reward_metric(*, experiment: Experiment):
    link = (
        experiment.experiment_metrics.select_related("metric")
        .filter(role=ExperimentMetric.Role.PRIMARY)
        .first()
    )
    return link.metric if link else None


def bandit_shares(*, experiment: Experiment, variants: list[Variant]) -> dict[str, float]:
    """The latest allocation of the current phase; equal shares before the first update."""
    latest = (
        BanditAllocation.objects.filter(experiment=experiment, phase=experiment.phase)
        .order_by("-computed_at")
        .values_list("shares", flat=True)
        .first()
    )
    keys = [v.key for v in variants]
    if latest and set(latest) == set(keys):
        return {key: float(latest[key]) for key in keys}
    return {key: 1 / len(keys) for key in keys}


def bandit_draw(
    *, experiment: Experiment, profile: Profile, record: bool, source: str, now: datetime | None = None
) -> tuple[Variant, float, bool]:
    """Draw an arm for one request (not sticky: bandits learn from every request).

    Returns the arm, the uniform draw that chose it and whether an exposure was recorded.
    """
    variants = list(experiment.variants.all())
    shares = bandit_shares(experiment=experiment, variants=variants)
    draw = random.random()
    key = bandits.choose_arm(shares, draw)
    arm = next(v for v in variants if v.key == key)
    if record:
        Exposure.objects.create(
            experiment=experiment,
            phase=experiment.phase,
            profile=profile,
            variant=arm,
            timestamp=now or timezone.now(),
            source=source,
        )
    return arm, draw, record


def bandit_arm_stats(
    *, experiment: Experiment, as_of: datetime, segment_ids: Sequence[int] = ()
) -> tuple[dict[int, tuple[int, int]], dict[int, dict[int, tuple[int, int]]]]:
    """Per arm (variant id): exposures (trials) and successes, counted in one SQL statement;
    and the same per segment id of ``segment_ids`` and arm.

    An exposure is a success when the profile performed the reward event within the window
    after it **and before its next exposure** to the experiment: every request draws an arm,
    so a profile often sees several arms within one window, and its conversion is credited
    once, to the arm it saw last (without that, one conversion counted as a success of every
    exposure before it, and arms the profile saw earlier shared the credit of the one that
    converted it). Exposures with the same time are ordered by id.

    A profile counts in a segment when it was a member at its first exposure of the phase.
    """
    from .services import _db_time, _Dialect

    metric = bandit_reward_metric(experiment=experiment)
    if metric is None:
        return {}, {}
    dialect = _Dialect(connection.vendor)
    hours = metric.window_hours or DEFAULT_REWARD_WINDOW_HOURS
    ts, xt, yt = dialect.t("e.timestamp"), dialect.t("x.timestamp"), dialect.t("y.timestamp")
    name_sql, name_params = ("AND e.name = %s ", [metric.event_name]) if metric.event_name else ("", [])
    exposures = Exposure._meta.db_table
    sql = (
        "WITH credited AS (SELECT x.profile_id, x.variant_id, x.timestamp AS exposed_at, "
        f"CASE WHEN EXISTS (SELECT 1 FROM {Event._meta.db_table} e WHERE e.profile_id = x.profile_id "
        f"AND e.type = %s {name_sql}AND {ts} >= {xt} AND {ts} < {dialect.shift('x.timestamp', hours)} "
        f"AND {ts} <= {dialect.param_time()} "
        # ... and no later exposure of the same profile came before the event.
        f"AND NOT EXISTS (SELECT 1 FROM {exposures} y WHERE y.experiment_id = x.experiment_id "
        f"AND y.phase = x.phase AND y.profile_id = x.profile_id AND {yt} <= {ts} "
        f"AND ({yt} > {xt} OR ({yt} = {xt} AND y.id > x.id)))) THEN 1 ELSE 0 END AS success "
        f"FROM {exposures} x WHERE x.experiment_id = %s AND x.phase = %s AND {xt} <= {dialect.param_time()}) "
        "SELECT NULL, variant_id, COUNT(*), SUM(success) FROM credited GROUP BY variant_id"
    )
    params = [
        metric.event_type,
        *name_params,
        _db_time(as_of),
        experiment.pk,
        experiment.phase,
        _db_time(as_of),
    ]
    if segment_ids:
        fe = dialect.t("f.first_exposed_at")
        sql += (
            " UNION ALL SELECT m.segment_id, c.variant_id, COUNT(*), SUM(c.success) FROM credited c "
            "JOIN (SELECT profile_id, MIN(exposed_at) AS first_exposed_at FROM credited "
            "GROUP BY profile_id) f "
            f"ON f.profile_id = c.profile_id JOIN {SegmentMembership._meta.db_table} m "
            f"ON m.profile_id = c.profile_id AND m.segment_id IN ({', '.join(['%s'] * len(segment_ids))}) "
            f"AND {dialect.t('m.entered_at')} <= {fe} "
            f"AND (m.exited_at IS NULL OR {dialect.t('m.exited_at')} > {fe}) "
            "GROUP BY m.segment_id, c.variant_id"
        )
        params += list(segment_ids)
    overall: dict[int, tuple[int, int]] = {}
    by_segment: dict[int, dict[int, tuple[int, int]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for segment_id, variant_id, n, s in cursor.fetchall():
            target = overall if segment_id is None else by_segment.setdefault(segment_id, {})
            target[variant_id] = (int(n), int(s or 0))
    return overall, by_segment


def bandit_analysis(
    *, experiment: Experiment, as_of: datetime, segments: Sequence[tuple[Segment, str]] = ()
) -> dict:
    """Arms with trials, successes, posterior mean, chance to be the best arm and the share of
    traffic Thompson sampling gives them now; per segment, each arm's trials, successes, rate
    and chance to be the best arm within the segment."""
    variants = list(experiment.variants.all())
    counts, by_segment = bandit_arm_stats(
        experiment=experiment, as_of=as_of, segment_ids=[segment.pk for segment, _ in segments]
    )
    arms = [bandits.Arm(v.key, counts.get(v.pk, (0, 0))[1], counts.get(v.pk, (0, 0))[0]) for v in variants]
    if not arms:
        return {"arms": [], "segments": []}
    seed = int(as_of.timestamp()) % (2**32)
    p_best = bandits.probability_best(arms, seed=seed)
    min_share = min(experiment.bandit_min_share, 1 / len(arms))
    shares = bandits.thompson_allocation(arms, min_share=min_share, seed=seed)
    segment_rows = []
    for segment, origin in segments:
        cells = by_segment.get(segment.pk, {})
        within = [
            bandits.Arm(v.key, cells.get(v.pk, (0, 0))[1], cells.get(v.pk, (0, 0))[0]) for v in variants
        ]
        segment_rows.append(
            {
                **_segment_head(segment, origin),
                "arms": [
                    {
                        "key": v.key,
                        "name": v.name,
                        "trials": arm.trials,
                        "successes": arm.successes,
                        "rate": arm.successes / arm.trials if arm.trials else None,
                        "p_best": p,
                    }
                    for v, arm, p in zip(
                        variants, within, bandits.probability_best(within, seed=seed), strict=True
                    )
                ],
            }
        )
    return {
        "min_share": min_share,
        "arms": [
            {
                "key": v.key,
                "name": v.name,
                "trials": arm.trials,
                "successes": arm.successes,
                "rate": arm.successes / arm.trials if arm.trials else None,
                "posterior_mean": (1 + arm.successes) / (2 + arm.trials),
                "p_best": p,
                "share": shares[v.key],
            }
            for v, arm, p in zip(variants, arms, p_best, strict=True)
        ],
        "segments": segment_rows,
    }


def bandit_verdict(*, result: dict) -> tuple[str, str]:
    arms = result.get("arms") or []
    if not arms or not sum(a["trials"] for a in arms):
        return "No exposures yet: every arm gets an equal share until the first rewards arrive.", "neutral"
    best = max(arms, key=lambda a: a["p_best"])
    rate = f"{best['rate'] * 100:.2f}%" if best["rate"] is not None else "no data"
    tone = "good" if best["p_best"] >= 0.95 else "neutral"
    return (
        f"{best['name']} leads ({rate} conversion over {best['trials']} exposures): "
        f"{best['p_best'] * 100:.0f}% chance it is the best arm; it now gets "
        f"{best['share'] * 100:.0f}% of the traffic.",
        tone,
    )


@transaction.atomic
def bandit_update(*, experiment: Experiment, now: datetime | None = None) -> BanditAllocation:
    """Recompute the posteriors and store the new allocation. Keyed by the minute, so a task
    delivered twice overwrites its own row instead of adding one."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    result = bandit_analysis(experiment=experiment, as_of=now)
    allocation, _ = BanditAllocation.objects.update_or_create(
        experiment=experiment,
        phase=experiment.phase,
        computed_at=now,
        defaults={
            "shares": {a["key"]: a["share"] for a in result["arms"]},
            "arms": {
                a["key"]: {"trials": a["trials"], "successes": a["successes"], "p_best": a["p_best"]}
                for a in result["arms"]
            },
        },
    )
    return allocation


def bandits_update_due() -> list[int]:
    return list(
        Experiment.objects.filter(status=Experiment.Status.RUNNING, kind=Experiment.Kind.BANDIT).values_list(
            "pk", flat=True
        )
    )


def bandit_history(*, experiment: Experiment) -> list[BanditAllocation]:
    return list(
        BanditAllocation.objects.filter(experiment=experiment, phase=experiment.phase).order_by("computed_at")
    )
