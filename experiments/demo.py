"""The demo experiments that ``seed_demo`` creates (event source ``demo-experiments``).

Three experiments whose stored behaviour matches their effects, so the report pages show real
analyses: a concluded A/B test with a clear winner, a running A/B test on a placement and a
bandit whose allocation moved to its best arm. Everything goes through the experiment
services (assignment hashing, lifecycle, posterior updates, analysis); only exposure times and
the extra behaviour the treatments caused are written directly.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np
from django.db.models import Min

from catalog.models import Item
from personalization.models import Event, Profile, Segment, SegmentMembership, Source

from . import modes
from . import services as experiments
from .models import Assignment, Experiment, ExperimentMetric, Exposure, Metric

BATCH_SIZE = 5000
EXPERIMENT_SOURCE_NAME = "demo-experiments"
DEMO_METRICS = [
    {"key": "completion-7d", "name": "7-day completion", "kind": "conversion", "event_type": "complete",
     "window_hours": 168, "description": "Share of exposed profiles who finish a title within 7 days."},
    {"key": "plays-per-profile", "name": "plays per profile", "kind": "mean", "event_type": "play",
     "description": "Plays after the first exposure, per profile."},
    {"key": "abandon-7d", "name": "7-day abandonment", "kind": "conversion", "event_type": "abandon",
     "window_hours": 168, "higher_is_better": False,
     "description": "Share of exposed profiles who abandon a title within 7 days (a guardrail)."},
    {"key": "hero-click-24h", "name": "hero banner click-through", "kind": "conversion",
     "event_type": "click", "event_name": "Hero Banner Clicked", "window_hours": 24,
     "description": "Share of exposures followed by a click on the hero banner within a day."},
]  # fmt: skip


def demo_experiments_create(*, now: datetime, seed: int) -> dict[str, int]:
    """Create the demo experiments with their exposures, behaviour and analyses; returns counts."""
    rng = np.random.default_rng(seed + 1000)
    source, _ = Source.objects.get_or_create(name=EXPERIMENT_SOURCE_NAME)
    metrics = {m["key"]: Metric.objects.get_or_create(key=m["key"], defaults=m)[0] for m in DEMO_METRICS}
    # A static segment to break results down by: the most active third of the audience.
    activity = Counter(Event.objects.values_list("profile_id", flat=True).iterator(chunk_size=20_000))
    heavy_ids = [pid for pid, _ in activity.most_common(max(1, len(activity) // 3))]
    heavy, created = Segment.objects.get_or_create(
        key="heavy-viewers",
        defaults={"name": "Heavy viewers", "kind": Segment.Kind.STATIC, "size": len(heavy_ids),
                  "description": "The most active third of the demo audience (static)."},
    )  # fmt: skip
    if created:
        first_seen = dict(Profile.objects.filter(pk__in=heavy_ids).values_list("pk", "first_seen"))
        SegmentMembership.objects.bulk_create(
            [
                SegmentMembership(segment=heavy, profile_id=pid, entered_at=first_seen.get(pid) or now)
                for pid in heavy_ids
            ],
            batch_size=BATCH_SIZE,
        )
    movies = list(Item.objects.exclude(kind="product").values_list("pk", flat=True))
    events: list[Event] = []
    counts = {"experiments": 0, "exposures": 0, "experiment_events": 0}

    def ab_test(key, name, hypothesis, placement, recommenders, start, end, extra, conclude_note=""):
        exposures, added = _demo_ab_test(
            key=key, name=name, hypothesis=hypothesis, placement=placement, recommenders=recommenders,
            start=start, end=end, extra_completion=extra, metrics=metrics, breakdown=[heavy.pk], rng=rng,
            source=source, items=movies, events=events, conclude_note=conclude_note, now=now,
        )  # fmt: skip
        counts["experiments"] += 1
        counts["exposures"] += exposures
        counts["experiment_events"] += added

    ab_test(
        "home-row-hybrid",
        "Home row: hybrid vs trending",
        "A personalised hybrid row makes more people finish something than a trending row.",
        "home",
        ("trending", "hybrid"),
        now - timedelta(days=60),
        now - timedelta(days=32),
        0.5,
        conclude_note="The hybrid row raised 7-day completion clearly, with no guardrail breach. Shipped.",
    )
    ab_test(
        "similar-items-ease",
        "Because you watched: EASE vs item-kNN",
        "EASE finds better follow-ups than item-kNN in the 'Because you watched' row.",
        "because-you-watched",
        ("item-knn", "ease"),
        now - timedelta(days=12),
        now,
        0.1,
    )
    exposures, added = _demo_bandit(
        now=now, metric=metrics["hero-click-24h"], breakdown=[heavy.pk], rng=rng, source=source,
        profile_ids=list(activity), events=events,
    )  # fmt: skip
    counts["experiments"] += 1
    counts["exposures"] += exposures
    counts["experiment_events"] += added
    # The behaviour the experiments caused extends some timelines.
    last = {}
    for event in events:
        last[event.profile_id] = max(event.timestamp, last.get(event.profile_id, event.timestamp))
    touched = list(Profile.objects.filter(pk__in=list(last)).only("pk", "last_seen"))
    for profile in touched:
        profile.last_seen = max(last[profile.pk], profile.last_seen or last[profile.pk])
    Profile.objects.bulk_update(touched, ["last_seen"], batch_size=BATCH_SIZE)
    return counts


def _demo_ab_test(
    *, key, name, hypothesis, placement, recommenders, start, end, extra_completion, metrics, breakdown,
    rng, source, items, events, conclude_note, now,
) -> tuple[int, int]:  # fmt: skip
    """An A/B test on a placement: profiles active in [start, end] are assigned by the real hash and
    exposed at their first visit; the treatment makes ``extra_completion`` of its profiles who would
    not have finished anything that week finish a title (view, play, complete)."""
    experiment = Experiment(
        key=key, name=name, hypothesis=hypothesis, breakdown_segment_ids=breakdown, planned_sample_size=1500
    )
    experiments.experiment_save(
        experiment=experiment,
        variants=[
            {"key": "control", "name": recommenders[0], "weight": 0.5,
             "payload": {"placement": placement, "recommender": recommenders[0]}},
            {"key": "treatment", "name": recommenders[1], "weight": 0.5,
             "payload": {"placement": placement, "recommender": recommenders[1]}},
        ],
        metrics=[
            (metrics["completion-7d"], ExperimentMetric.Role.PRIMARY),
            (metrics["plays-per-profile"], ExperimentMetric.Role.SECONDARY),
            (metrics["abandon-7d"], ExperimentMetric.Role.GUARDRAIL),
        ],
        now=start,
    )  # fmt: skip
    experiments.experiment_start(experiment=experiment, now=start)
    first_visit = dict(
        Event.objects.filter(timestamp__gte=start, timestamp__lt=end)
        .values("profile_id")
        .annotate(first=Min("timestamp"))
        .values_list("profile_id", "first")
    )
    profiles = list(Profile.objects.filter(pk__in=list(first_visit)).order_by("pk"))
    variants = experiments.experiment_assign_many(key=key, profiles=profiles, record=False, now=start)
    assignments = list(Assignment.objects.filter(experiment=experiment, holdout=False))
    exposures = []
    for assignment in assignments:
        at = first_visit[assignment.profile_id]
        assignment.first_exposed_at = assignment.last_exposed_at = at
        exposures.append(
            Exposure(experiment=experiment, phase=experiment.phase, profile_id=assignment.profile_id,
                     variant_id=assignment.variant_id, timestamp=at, source="demo")
        )  # fmt: skip
    Assignment.objects.bulk_update(
        assignments, ["first_exposed_at", "last_exposed_at"], batch_size=BATCH_SIZE
    )
    Exposure.objects.bulk_create(exposures, batch_size=BATCH_SIZE)
    # Who finished something within the metric's week anyway: the treatment converts a share of the others.
    converted = set()
    week = timedelta(days=7)
    for profile_id, at in Event.objects.filter(
        type="complete", timestamp__gte=start, timestamp__lt=end + week, profile_id__in=list(first_visit)
    ).values_list("profile_id", "timestamp"):
        if first_visit[profile_id] <= at < first_visit[profile_id] + week:
            converted.add(profile_id)
    added = []
    for profile in profiles:
        variant = variants.get(profile.pk)
        if (
            variant is None
            or variant.is_control
            or profile.pk in converted
            or rng.random() >= extra_completion
        ):
            continue
        at = first_visit[profile.pk] + timedelta(hours=float(rng.uniform(1, 160)))
        item = int(items[int(rng.integers(len(items)))])
        if at > now - timedelta(hours=1):  # no behaviour from the future
            continue
        for offset, (kind, label) in enumerate(
            [
                ("view", "Product Viewed"),
                ("play", "Video Playback Started"),
                ("complete", "Video Content Completed"),
            ]
        ):
            when = at + timedelta(minutes=3 + 40 * offset)
            added.append(
                Event(source=source, message_id=f"{key}-{profile.pk}-{kind}", name=label, type=kind,
                      profile_id=profile.pk, item_id=item, timestamp=when, received_at=when)
            )  # fmt: skip
    Event.objects.bulk_create(added, batch_size=BATCH_SIZE)
    events.extend(added)
    if conclude_note:
        experiments.experiment_stop(experiment=experiment, now=end)
        experiments.analysis_backfill(experiment=experiment, points=4, now=end)
        treatment = experiment.variants.get(key="treatment")
        experiments.experiment_conclude(
            experiment=experiment, decision=Experiment.Decision.SHIP, variant=treatment, note=conclude_note
        )
    else:
        experiments.analysis_backfill(experiment=experiment, points=4, now=end)
    return len(exposures), len(added)


# Hero banners (a content module): true click-through rates the bandit has to discover.
DEMO_BANNERS = [("new-releases", "New releases", 0.03), ("top-10", "Top 10 this week", 0.05),
                ("for-you", "Picked for you", 0.09)]  # fmt: skip


def _demo_bandit(*, now, metric, breakdown, rng, source, profile_ids, events) -> tuple[int, int]:
    """Seven days of a Thompson-sampling bandit: every 12 hours the real posterior update runs on
    what was stored so far, then that step's requests draw arms from the new allocation."""
    start = now - timedelta(days=7)
    experiment = Experiment(
        key="hero-banner",
        name="Hero banner (bandit)",
        kind=Experiment.Kind.BANDIT,
        bandit_min_share=0.05,
        hypothesis="Let the traffic find the banner people click most, while still testing the others.",
        breakdown_segment_ids=breakdown,
    )
    experiments.experiment_save(
        experiment=experiment,
        variants=[
            {"key": key, "name": name, "weight": round(1 / len(DEMO_BANNERS), 4), "payload": {"module": key}}
            for key, name, _ in DEMO_BANNERS
        ],
        metrics=[(metric, ExperimentMetric.Role.PRIMARY)],
        now=start,
    )
    experiments.experiment_start(experiment=experiment, now=start)
    arms = list(experiment.variants.all())
    rates = {key: rate for key, _, rate in DEMO_BANNERS}
    per_step = max(20, len(profile_ids) // 12)
    exposures = clicks = 0
    for step in range(14):
        at = start + timedelta(hours=12 * step)
        shares = modes.bandit_update(experiment=experiment, now=at).shares
        p = np.array([shares[a.key] for a in arms])
        chosen = rng.choice(len(arms), size=per_step, p=p / p.sum())
        who = rng.choice(profile_ids, size=per_step)
        offsets = rng.uniform(0, 12 * 3600, size=per_step)
        rows, rewards = [], []
        for n in range(per_step):
            arm = arms[int(chosen[n])]
            when = at + timedelta(seconds=float(offsets[n]))
            rows.append(Exposure(experiment=experiment, phase=1, profile_id=int(who[n]), variant=arm,
                                 timestamp=when, source="demo"))  # fmt: skip
            clicked = when + timedelta(minutes=float(rng.uniform(1, 90)))
            if rng.random() < rates[arm.key] and clicked < now:
                rewards.append(
                    Event(source=source, message_id=f"hero-{step}-{n}", name="Hero Banner Clicked",
                          type="click", profile_id=int(who[n]), properties={"banner": arm.key},
                          timestamp=clicked, received_at=clicked)
                )  # fmt: skip
        Exposure.objects.bulk_create(rows)
        Event.objects.bulk_create(rewards)
        events.extend(rewards)
        exposures += len(rows)
        clicks += len(rewards)
    modes.bandit_update(experiment=experiment, now=now)
    experiments.experiment_analyze(experiment_id=experiment.pk, as_of=now)
    return exposures, clicks
