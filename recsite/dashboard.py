"""The dashboard's figures: KPIs over a date range compared with the period before it, the
running experiments with their verdicts, segments and model health. Grouped queries only;
the views render what these return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Max
from django.db.models.functions import TruncDate
from django.utils import timezone

from experiments.models import AnalysisSnapshot, Experiment
from personalization.models import Event, Recommender, Segment, TrainingRun

from . import charts, impact


@dataclass
class Kpi:
    label: str
    value: float | None
    previous: float | None
    kind: str = "count"  # count | percent | rate
    help: str = ""

    @property
    def change(self) -> float | None:
        """Relative change against the previous period (None when it cannot be said)."""
        if self.value is None or not self.previous:
            return None
        return (self.value - self.previous) / self.previous


@dataclass
class DashboardData:
    day_from: date
    day_to: date
    kpis: list[Kpi]
    days: list[date]
    events_by_type: list[tuple[date, str, int]]
    active_per_day: list[int]
    impact_report: impact.ImpactReport
    experiments: list[dict] = field(default_factory=list)
    segments: dict = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)


def _bounds(day_from: date, day_to: date) -> tuple[datetime, datetime]:
    """The range as aware datetimes in the current (the user's) time zone."""
    tz = timezone.get_current_timezone()
    return (
        datetime.combine(day_from, time.min, tzinfo=tz),
        datetime.combine(day_to + timedelta(days=1), time.min, tzinfo=tz),
    )


def _activity(day_from: date, day_to: date) -> tuple[int, int]:
    since, until = _bounds(day_from, day_to)
    window = Event.objects.filter(timestamp__gte=since, timestamp__lt=until)
    figures = window.aggregate(events=Count("id"), profiles=Count("profile_id", distinct=True))
    return figures["events"], figures["profiles"]


def experiments_running() -> list[dict]:
    """Running experiments with the verdict of their latest analysis on the primary metric.
    One query per running experiment: there are a handful, and snapshots carry large JSON."""
    out = []
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING).order_by(
        "-started_at", "pk"
    ):
        snapshot = (
            AnalysisSnapshot.objects.filter(experiment=experiment, phase=experiment.phase)
            .order_by("-as_of")
            .only("as_of", "results")
            .first()
        )
        verdicts = (snapshot.results.get("verdicts") or []) if snapshot else []
        primary = [v for v in verdicts if v.get("role") == "primary"] or verdicts
        out.append(
            {"experiment": experiment, "as_of": snapshot.as_of if snapshot else None, "verdicts": primary[:3]}
        )
    return out


def segments_summary() -> dict:
    largest = Segment.objects.order_by("-size", "name").first()
    return {"count": Segment.objects.count(), "largest": largest if largest and largest.size else None}


def models_health(*, now: datetime | None = None) -> list[dict]:
    """Per recommender with an active model: its last successful training, the active
    version's primary metric, and whether the model is stale: older than twice its retraining
    interval when it has a schedule (a missed retraining), else than MODEL_STALE_AFTER_HOURS."""
    now = now or timezone.now()
    recommenders = list(Recommender.objects.filter(active_run__isnull=False).select_related("active_run"))
    last = dict(
        TrainingRun.objects.filter(recommender__in=recommenders, status=TrainingRun.Status.SUCCEEDED)
        .values_list("recommender_id")
        .annotate(last=Max("finished_at"))
    )
    out = []
    for r in recommenders:
        trained_at = last.get(r.pk) or r.active_run.finished_at
        age = now - trained_at if trained_at else None
        stale_after = timedelta(
            hours=2 * r.retrain_every_hours if r.retrain_every_hours else settings.MODEL_STALE_AFTER_HOURS
        )
        out.append(
            {
                "recommender": r,
                "colour": charts.recommender_colour(r.name, r.algorithm),
                "version": r.active_run.version,
                "trained_at": trained_at,
                "metric": r.primary_metric,
                "value": (r.active_run.metrics or {}).get(r.primary_metric),
                "age": age,
                "stale": age is None or age > stale_after,
                "stale_after": stale_after,
            }
        )
    return out


def dashboard_data(*, day_from: date, day_to: date) -> DashboardData:
    """Everything the dashboard shows for [day_from, day_to] (days in the user's time zone;
    impact figures are per UTC day)."""
    length = (day_to - day_from).days + 1
    prev_to = day_from - timedelta(days=1)
    prev_from = prev_to - timedelta(days=length - 1)
    since, until = _bounds(day_from, day_to)
    tz = timezone.get_current_timezone()
    rows = list(
        Event.objects.filter(timestamp__gte=since, timestamp__lt=until)
        .annotate(day=TruncDate("timestamp", tzinfo=tz))
        .values_list("day", "type")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    days = [day_from + timedelta(days=i) for i in range(length)]
    active_per_day = impact.active_profiles_per_day(day_from=day_from, day_to=day_to)
    events = sum(n for _, _, n in rows)
    _, profiles = _activity(day_from, day_to)
    prev_events, prev_profiles = _activity(prev_from, prev_to)
    report = impact.impact_report(day_from=day_from, day_to=day_to)
    previous = impact.impact_report(day_from=prev_from, day_to=prev_to).summary()
    summary = report.summary()
    kpis = [
        Kpi(
            "Active profiles", profiles, prev_profiles, help="Profiles with at least one event in the range."
        ),
        Kpi("Events per day", events / length, prev_events / length, kind="rate"),
        Kpi("Recommendation impressions", summary["impressions"], previous["impressions"]),
        Kpi("Click-through rate", summary["ctr"], previous["ctr"], kind="percent"),
        Kpi(
            "Engagement from recommendations",
            summary["engagement_share"],
            previous["engagement_share"],
            kind="percent",
            help="Share of "
            + ", ".join(t.replace("_", " ") for t in report.types)
            + " that followed a click "
            "on a recommendation.",
        ),
    ]
    return DashboardData(
        day_from=day_from,
        day_to=day_to,
        kpis=kpis,
        days=days,
        events_by_type=rows,
        active_per_day=active_per_day,
        impact_report=report,
        experiments=experiments_running(),
        segments=segments_summary(),
        models=models_health(),
    )
