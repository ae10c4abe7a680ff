"""Experiments: lifecycle, assignment, metric computation (SQL-aggregated) and analysis."""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone
from django.utils.module_loading import import_string

from personalization.models import AnonymousId, Event, Profile, Segment, SegmentMembership
from recsite.services import audit_record

from . import hashing, stats
from .models import (
    AnalysisSnapshot,
    Assignment,
    Experiment,
    ExperimentMetric,
    Exposure,
    Metric,
    Phase,
    Variant,
    VariantResult,
)

logger = logging.getLogger(__name__)

Status = Experiment.Status


class ExperimentError(Exception):
    """A refused operation, with a message for people and the field it concerns."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


# --- Lifecycle -------------------------------------------------------------------------------


def experiment_problems(*, experiment: Experiment) -> list[str]:
    """What stops an experiment from starting, in plain words (empty when it can start)."""
    problems = []
    variants = list(experiment.variants.all())
    if len(variants) < 2:
        problems.append("It needs a control and at least one other variant.")
    if experiment.kind == Experiment.Kind.INTERLEAVING:
        # Weights and metrics do not apply: every profile sees both recommenders in one list.
        recommenders = [v.payload.get("recommender") for v in variants]
        placements = {v.payload.get("placement") for v in variants}
        if len(variants) != 2 or not all(isinstance(r, str) and r for r in recommenders):
            problems.append(
                "Interleaving compares exactly two variants whose payloads name a recommender "
                '({"recommender": "ease"}).'
            )
        if len(placements) != 1 or not all(isinstance(p, str) and p for p in placements):
            problems.append('Both variants must name the same placement ({"placement": "home"}).')
        return problems
    total = sum(v.weight for v in variants)
    if experiment.kind == Experiment.Kind.AB and variants and not 0.99 <= total <= 1.01:
        problems.append(f"Variant weights must add up to 1 (they add up to {total:g}).")
    if (
        experiment.kind == Experiment.Kind.BANDIT
        and variants
        and experiment.bandit_min_share * len(variants) > 1
    ):
        problems.append(
            f"A minimum share of {experiment.bandit_min_share:g} per arm is impossible "
            f"with {len(variants)} arms."
        )
    primary = experiment.experiment_metrics.filter(role=ExperimentMetric.Role.PRIMARY).select_related(
        "metric"
    )
    if not primary.exists():
        problems.append(
            "Choose a primary metric (the reward of the bandit)."
            if experiment.kind == Experiment.Kind.BANDIT
            else "Choose a primary metric."
        )
    elif experiment.kind == Experiment.Kind.BANDIT and primary.first().metric.kind != Metric.Kind.CONVERSION:
        problems.append("A bandit's reward (its primary metric) must be a conversion metric.")
    return problems


def _transition(experiment: Experiment, *, allowed: Iterable[str], to: str, **fields) -> None:
    """A compare-and-set status change: only one caller wins, the others get an error."""
    updated = Experiment.objects.filter(pk=experiment.pk, status__in=list(allowed)).update(
        status=to, updated_at=timezone.now(), **fields
    )
    if not updated:
        current = Experiment.objects.filter(pk=experiment.pk).values_list("status", flat=True).first()
        raise ExperimentError(
            f"Cannot move the experiment from {current} to {to}.", field="status", status=409
        )
    experiment.refresh_from_db()


@transaction.atomic
def experiment_start(
    *, experiment: Experiment, now: datetime | None = None, user: AbstractBaseUser | None = None
) -> Experiment:
    """draft or paused -> running. The first start opens phase 1."""
    now = now or timezone.now()
    problems = experiment_problems(experiment=experiment)
    if problems:
        raise ExperimentError(" ".join(problems), field="status")
    first = experiment.status == Status.DRAFT
    fields = {"started_at": now} if first else {}
    _transition(experiment, allowed=[Status.DRAFT, Status.PAUSED], to=Status.RUNNING, **fields)
    if first:
        Phase.objects.get_or_create(
            experiment=experiment,
            number=experiment.phase,
            defaults={"started_at": now, "settings": _phase_settings(experiment), "reason": "Started"},
        )
    audit_record(actor=user, action="experiment.start", target=experiment)
    return experiment


def experiment_pause(*, experiment: Experiment, user: AbstractBaseUser | None = None) -> Experiment:
    """running -> paused: no new profiles are assigned; existing assignments are kept."""
    _transition(experiment, allowed=[Status.RUNNING], to=Status.PAUSED)
    audit_record(actor=user, action="experiment.pause", target=experiment)
    return experiment


@transaction.atomic
def experiment_stop(
    *, experiment: Experiment, now: datetime | None = None, user: AbstractBaseUser | None = None
) -> Experiment:
    now = now or timezone.now()
    _transition(experiment, allowed=[Status.RUNNING, Status.PAUSED], to=Status.STOPPED, ended_at=now)
    Phase.objects.filter(experiment=experiment, number=experiment.phase, ended_at__isnull=True).update(
        ended_at=now
    )
    audit_record(actor=user, action="experiment.stop", target=experiment)
    return experiment


def experiment_conclude(
    *, experiment: Experiment, decision: str, variant: Variant | None = None, note: str = ""
) -> Experiment:
    """stopped -> concluded with a decision (ship a variant, keep the control, inconclusive)."""
    if decision not in Experiment.Decision.values:
        raise ExperimentError("Choose a decision.", field="decision")
    if decision == Experiment.Decision.SHIP:
        if variant is None or variant.experiment_id != experiment.pk or variant.is_control:
            raise ExperimentError("Choose the variant to ship (not the control).", field="decision_variant")
    else:
        variant = None
    _transition(
        experiment,
        allowed=[Status.STOPPED],
        to=Status.CONCLUDED,
        decision=decision,
        decision_variant=variant,
        decision_note=note,
        concluded_at=timezone.now(),
    )
    return experiment


def _phase_settings(experiment: Experiment) -> dict:
    return {
        "traffic_percent": experiment.traffic_percent,
        "holdout_percent": experiment.holdout_percent,
        "segment_ids": experiment.segment_ids,
        "weights": {v.key: v.weight for v in experiment.variants.all()},
        "metrics": {em.metric.key: em.role for em in experiment.experiment_metrics.select_related("metric")},
    }


# Fields a running experiment may change freely; the others would corrupt its analysis.
SAFE_WHILE_RUNNING = {
    "name", "hypothesis", "owner", "planned_sample_size", "alpha", "correction", "cuped",
    # The breakdown only slices the analysis; a bandit's floor only bounds the next allocations.
    "breakdown_segment_ids", "bandit_min_share",
}  # fmt: skip


@transaction.atomic
def experiment_save(
    *,
    experiment: Experiment,
    changed_fields: Iterable[str] = (),
    variants: list[dict] | None = None,
    metrics: list[tuple[Metric, str]] | None = None,
    new_phase_reason: str = "",
    now: datetime | None = None,
) -> Experiment:
    """Create or update an experiment with its variants and metrics.

    Once an experiment has started, changing traffic, targeting, variants, weights or metrics
    would mix two experiments in one analysis: it is refused unless ``new_phase_reason`` is
    given, which starts a new phase (a new randomisation and a fresh analysis).

    Every check comes before the first write (the version claim), so a refused save leaves the
    instance reusable. A failure after it (a database error, or a concurrent change that
    started a new phase first) rolls everything back, but, as with any Django instance after
    a rollback, ``experiment`` keeps its claimed ``version``: reload it (``refresh_from_db()``)
    before saving it again. The edit view does not need to: its form re-renders the version
    the editor posted.
    """
    now = now or timezone.now()
    creating = experiment.pk is None
    corrupting = set(changed_fields) - SAFE_WHILE_RUNNING
    if not creating:
        old_variants = [(v.key, v.weight, v.payload) for v in experiment.variants.order_by("position")]
        # Renaming a variant is harmless; its key, weight or payload (what users see) is not.
        if (
            variants is not None
            and [(v["key"], float(v["weight"]), v.get("payload") or {}) for v in variants] != old_variants
        ):
            corrupting.add("variants")
        if metrics is not None:
            old = {(em.metric_id, em.role) for em in experiment.experiment_metrics.all()}
            if {(m.pk, role) for m, role in metrics} != old:
                corrupting.add("metrics")
    if not creating and experiment.is_locked and corrupting:
        if experiment.status == Status.CONCLUDED:
            raise ExperimentError("A concluded experiment cannot change.", field=sorted(corrupting)[0])
        if not new_phase_reason:
            raise ExperimentError(
                "Changing " + ", ".join(sorted(corrupting)) + " while the experiment has traffic would mix "
                "two experiments in one analysis. Start a new phase to make this change.",
                field=sorted(corrupting)[0],
                status=409,
            )
    if variants is not None:
        keys = [v["key"] for v in variants]
        if len(keys) != len(set(keys)):
            raise ExperimentError("Variant keys must be unique.", field="variants")
    if metrics is not None and sum(1 for _, role in metrics if role == ExperimentMetric.Role.PRIMARY) > 1:
        raise ExperimentError("Choose only one primary metric.", field="metrics")
    try:
        experiment.full_clean(exclude=["metrics", "decision_variant"])
    except ValidationError as exc:
        field, errors = next(iter(exc.message_dict.items()))
        raise ExperimentError(f"{field}: {errors[0]}", field=field) from None
    if not creating:
        _version_claim(experiment)
    experiment.save()
    if variants is not None and (creating or "variants" in corrupting):
        _variants_replace(experiment, variants)
    elif variants is not None:
        for data in variants:
            experiment.variants.filter(key=data["key"]).exclude(name=data["name"]).update(name=data["name"])
    if metrics is not None and (creating or "metrics" in corrupting):
        experiment.experiment_metrics.all().delete()
        ExperimentMetric.objects.bulk_create(
            [ExperimentMetric(experiment=experiment, metric=m, role=role) for m, role in metrics]
        )
    if not creating and experiment.is_locked and corrupting and new_phase_reason:
        _phase_next(experiment, reason=new_phase_reason, now=now)
    return experiment


def _version_claim(experiment: Experiment) -> None:
    """Compare-and-set on the version the editor loaded, so that of two people saving the same
    experiment the second is told instead of silently overwriting the first."""
    seen = experiment.version
    if not Experiment.objects.filter(pk=experiment.pk, version=seen).update(version=seen + 1):
        raise ExperimentError(
            "Someone else changed this experiment after you opened it (changed by someone else). "
            "Reload the page to see their changes, then make yours again.",
            field="version",
            status=409,
        )
    experiment.version = seen + 1


def _variants_replace(experiment: Experiment, variants: list[dict]) -> None:
    """Update variants in place by key (assignments point at them), add new ones, delete the rest."""
    existing = {v.key: v for v in experiment.variants.all()}
    keep = []
    # Park positions first so the unique (experiment, position) constraint holds during the shuffle.
    for offset, v in enumerate(existing.values()):
        Variant.objects.filter(pk=v.pk).update(position=1000 + offset)
    for position, data in enumerate(variants):
        variant = existing.get(data["key"]) or Variant(experiment=experiment, key=data["key"])
        variant.name = data["name"]
        variant.weight = float(data["weight"])
        variant.payload = data.get("payload") or {}
        variant.position = position
        variant.save()
        keep.append(variant.pk)
    experiment.variants.exclude(pk__in=keep).delete()


def _phase_next(experiment: Experiment, *, reason: str, now: datetime) -> None:
    current = experiment.phase
    updated = Experiment.objects.filter(pk=experiment.pk, phase=current).update(phase=current + 1)
    if not updated:
        raise ExperimentError("Another change started a new phase first; reload and retry.", status=409)
    experiment.refresh_from_db()
    Phase.objects.filter(experiment=experiment, number=current, ended_at__isnull=True).update(ended_at=now)
    Phase.objects.create(
        experiment=experiment,
        number=experiment.phase,
        started_at=now,
        reason=reason,
        settings=_phase_settings(experiment),
    )


# --- Assignment --------------------------------------------------------------------------------


@dataclass
class AssignmentResult:
    experiment: Experiment
    variant: Variant | None
    in_experiment: bool
    reason: str
    profile: Profile | None = None
    bucket: float | None = None
    exposure_recorded: bool = False


def _profile_get_or_create(*, user_id: str | None, anonymous_id: str | None) -> Profile:
    """The profile behind an id; created when unknown so that the assignment is sticky."""
    if user_id:
        profile = Profile.objects.filter(external_id=user_id).first()
        if profile:
            return profile
        try:
            with transaction.atomic():
                return Profile.objects.create(external_id=user_id)
        except IntegrityError:
            return Profile.objects.get(external_id=user_id)
    link = AnonymousId.objects.select_related("profile").filter(anonymous_id=anonymous_id).first()
    if link:
        return link.profile
    try:
        with transaction.atomic():
            profile = Profile.objects.create()
            AnonymousId.objects.create(anonymous_id=anonymous_id, profile=profile)
            return profile
    except IntegrityError:
        return AnonymousId.objects.select_related("profile").get(anonymous_id=anonymous_id).profile


def targeting_matches(*, experiment: Experiment, profile: Profile) -> bool:
    """Segment targeting. The membership check is pluggable (``EXPERIMENTS_SEGMENT_RESOLVER``, a
    dotted path to ``f(profile_id, segment_ids) -> bool``) until segments ship; with segments
    configured and no resolver, nobody matches (the experiment gets no traffic, visibly)."""
    if not experiment.segment_ids:
        return True
    path = getattr(settings, "EXPERIMENTS_SEGMENT_RESOLVER", "")
    if not path:
        return False
    return bool(import_string(path)(profile.pk, list(experiment.segment_ids)))


def experiment_assign(
    *,
    key: str,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    record: bool = True,
    source: str = "api",
    now: datetime | None = None,
) -> AssignmentResult:
    """The variant of a user in a running experiment; records an exposure unless ``record`` is False.

    Buckets are GrowthBook's (v2 hash of seed + id): a GrowthBook SDK configured with the same
    seed, weights and coverage computes the same variant. The first assignment is persisted
    and wins from then on, whatever happens to the weights.
    """
    if not (user_id or anonymous_id):
        raise ExperimentError("Give a user_id or an anonymous_id.", field="user_id")
    experiment = Experiment.objects.filter(key=key).first()
    if experiment is None:
        raise ExperimentError(f"No experiment with key {key!r}.", field="key", status=404)
    variants = list(experiment.variants.all())
    control = variants[0] if variants else None
    if experiment.status == Status.CONCLUDED and experiment.decision == Experiment.Decision.SHIP:
        shipped = next((v for v in variants if v.pk == experiment.decision_variant_id), control)
        return AssignmentResult(
            experiment, shipped, False, "concluded: the winning variant ships to everybody"
        )
    if experiment.status != Status.RUNNING:
        return AssignmentResult(experiment, control, False, f"experiment is {experiment.status}")
    if experiment.kind == Experiment.Kind.INTERLEAVING:
        return AssignmentResult(
            experiment, control, False, "interleaving: the placement shows both recommenders in one list"
        )
    now = now or timezone.now()
    hash_value = user_id or anonymous_id
    profile = _profile_get_or_create(user_id=user_id, anonymous_id=anonymous_id)
    if experiment.kind == Experiment.Kind.BANDIT:
        from . import modes

        if not targeting_matches(experiment=experiment, profile=profile):
            return AssignmentResult(
                experiment, control, False, "not in the targeted segments", profile=profile
            )
        arm, draw, recorded = modes.bandit_draw(
            experiment=experiment, profile=profile, record=record, source=source, now=now
        )
        return AssignmentResult(experiment, arm, True, "drawn", profile, draw, recorded)
    assignment = (
        Assignment.objects.select_related("variant")
        .filter(experiment=experiment, phase=experiment.phase, profile=profile)
        .first()
    )
    if assignment is None:
        result = _assignment_decide(experiment, variants, profile, hash_value)
        if result.variant is None or (not result.in_experiment and result.reason != "holdout"):
            result.profile = profile
            return result
        try:
            with transaction.atomic():
                assignment = Assignment.objects.create(
                    experiment=experiment,
                    phase=experiment.phase,
                    profile=profile,
                    variant=result.variant,
                    holdout=result.reason == "holdout",
                    bucket=result.bucket,
                    assigned_at=now,
                )
        except IntegrityError:  # a concurrent request assigned first: its assignment wins
            assignment = Assignment.objects.select_related("variant").get(
                experiment=experiment, phase=experiment.phase, profile=profile
            )
    result = AssignmentResult(
        experiment,
        assignment.variant,
        not assignment.holdout,
        "holdout" if assignment.holdout else "assigned",
        profile=profile,
        bucket=assignment.bucket,
    )
    if record and not assignment.holdout:
        exposure_record(assignment=assignment, source=source, now=now)
        result.exposure_recorded = True
    return result


def _assignment_decide(
    experiment: Experiment, variants: list[Variant], profile: Profile, hash_value: str
) -> AssignmentResult:
    control = variants[0] if variants else None
    if experiment.namespace and not hashing.in_namespace(
        hash_value, experiment.namespace, experiment.namespace_start, experiment.namespace_end
    ):
        return AssignmentResult(experiment, control, False, "outside the namespace range")
    if not targeting_matches(experiment=experiment, profile=profile):
        return AssignmentResult(experiment, control, False, "not in the targeted segments")
    bucket = hashing.bucket_hash(experiment.seed, hash_value, 2)
    ranges = hashing.bucket_ranges(
        len(variants), experiment.traffic_percent / 100, [v.weight for v in variants]
    )
    index = hashing.choose_variation(bucket, ranges)
    if index < 0:
        return AssignmentResult(experiment, control, False, "outside the traffic allocation", bucket=bucket)
    if experiment.holdout_percent and (
        hashing.bucket_hash(experiment.seed + ":holdout", hash_value, 2) < experiment.holdout_percent / 100
    ):
        return AssignmentResult(experiment, control, False, "holdout", bucket=bucket)
    return AssignmentResult(experiment, variants[index], True, "assigned", bucket=bucket)


@transaction.atomic
def experiment_assign_many(
    *,
    key: str,
    profiles: list[Profile],
    record: bool = True,
    source: str = "batch",
    now: datetime | None = None,
) -> dict[int, Variant | None]:
    """Assign (and expose) a batch of known profiles at once, e.g. the audience of an email send.

    The same decisions as ``experiment_assign`` (hash on the external id, else on the first
    anonymous id), in a handful of queries. Existing assignments stick. Returns profile id ->
    variant (None when outside the experiment or held out).
    """
    experiment = Experiment.objects.get(key=key)
    if experiment.status != Status.RUNNING:
        raise ExperimentError(f"The experiment is {experiment.status}.", field="status", status=409)
    now = now or timezone.now()
    variants = list(experiment.variants.all())
    by_id = {v.pk: v for v in variants}
    existing = dict(
        Assignment.objects.filter(
            experiment=experiment, phase=experiment.phase, profile__in=profiles
        ).values_list("profile_id", "variant_id")
    )
    anonymous = dict(
        AnonymousId.objects.filter(profile__in=[p for p in profiles if not p.external_id])
        .order_by("pk")
        .values_list("profile_id", "anonymous_id")
    )
    new, out = [], {}
    for profile in profiles:
        if profile.pk in existing:
            out[profile.pk] = by_id[existing[profile.pk]]
            continue
        hash_value = profile.external_id or anonymous.get(profile.pk)
        if not hash_value:
            out[profile.pk] = None
            continue
        result = _assignment_decide(experiment, variants, profile, hash_value)
        if result.reason == "holdout" or result.in_experiment:
            new.append(
                Assignment(
                    experiment=experiment,
                    phase=experiment.phase,
                    profile=profile,
                    variant=result.variant,
                    holdout=result.reason == "holdout",
                    bucket=result.bucket,
                    assigned_at=now,
                    first_exposed_at=now if record and result.in_experiment else None,
                    last_exposed_at=now if record and result.in_experiment else None,
                )
            )
        out[profile.pk] = result.variant if result.in_experiment else None
    Assignment.objects.bulk_create(new, batch_size=5000, ignore_conflicts=True)
    if record:
        exposed = [a for a in new if not a.holdout]
        Exposure.objects.bulk_create(
            [
                Exposure(
                    experiment=experiment,
                    phase=experiment.phase,
                    profile_id=a.profile_id,
                    variant_id=a.variant_id,
                    timestamp=now,
                    source=source,
                )
                for a in exposed
            ],
            batch_size=5000,
        )
    return out


def exposure_record(*, assignment: Assignment, source: str = "api", now: datetime | None = None) -> Exposure:
    now = now or timezone.now()
    exposure = Exposure.objects.create(
        experiment_id=assignment.experiment_id,
        phase=assignment.phase,
        profile_id=assignment.profile_id,
        variant_id=assignment.variant_id,
        timestamp=now,
        source=source,
    )
    # Only the first exposure sets first_exposed_at (the start of every metric window).
    Assignment.objects.filter(pk=assignment.pk, first_exposed_at__isnull=True).update(first_exposed_at=now)
    Assignment.objects.filter(pk=assignment.pk).update(last_exposed_at=now)
    return exposure


@transaction.atomic
def assignments_merge(*, source: Profile, target: Profile) -> int:
    """Move ``source``'s assignments and exposures to ``target`` when two identities merge.

    Where both have an assignment in the same experiment phase, the target's wins (its
    variant is what the known user has seen); the source's exposures still move, so the
    report can count profiles exposed to several variants. Returns the assignments moved.
    """
    target_keys = set(Assignment.objects.filter(profile=target).values_list("experiment_id", "phase"))
    moved = 0
    for assignment in Assignment.objects.filter(profile=source):
        if (assignment.experiment_id, assignment.phase) in target_keys:
            Assignment.objects.filter(
                profile=target,
                experiment_id=assignment.experiment_id,
                phase=assignment.phase,
                first_exposed_at__gt=assignment.first_exposed_at or timezone.now(),
            ).update(first_exposed_at=assignment.first_exposed_at)
            assignment.delete()
        else:
            Assignment.objects.filter(pk=assignment.pk).update(profile=target)
            moved += 1
    Exposure.objects.filter(profile=source).update(profile=target)
    return moved


# --- Metrics: per-variant sufficient statistics, aggregated in SQL ---------------------------------


class _Dialect:
    """The few expressions that differ between SQLite and PostgreSQL."""

    def __init__(self, vendor: str):
        self.vendor = vendor

    def t(self, column: str) -> str:
        return f"julianday({column})" if self.vendor == "sqlite" else column

    def param_time(self) -> str:
        return "julianday(%s)" if self.vendor == "sqlite" else "%s"

    def shift(self, column: str, hours: float) -> str:
        if self.vendor == "sqlite":
            return f"(julianday({column}) + {float(hours) / 24!r})"
        return f"({column} + interval '{float(hours)!r} hours')"

    def number_property(self) -> tuple[str, int]:
        """A numeric property of the event, 0 when missing or not a number; returns SQL and param count."""
        if self.vendor == "sqlite":
            return (
                "(CASE WHEN json_type(e.properties, %s) IN ('integer', 'real') "
                "THEN json_extract(e.properties, %s) ELSE 0 END)",
                2,
            )
        return (
            "(CASE WHEN jsonb_typeof(e.properties -> %s) = 'number' "
            "THEN (e.properties ->> %s)::float ELSE 0 END)",
            2,
        )

    def least(self, a: str, b: str) -> str:
        return f"MIN({a}, {b})" if self.vendor == "sqlite" else f"LEAST({a}, {b})"


class _ExposureBounds(_Dialect):
    """A dialect whose expressions over ``a.first_exposed_at`` (metric windows, the CUPED
    look-back) become columns of the assignment subquery: computed once per profile instead
    of once per joined event row (millions of interval additions saved on a large analysis)."""

    def __init__(self, vendor: str):
        super().__init__(vendor)
        self.columns: dict[str, str] = {}  # alias -> expression over a.first_exposed_at

    def _alias(self, expression: str) -> str:
        for alias, known in self.columns.items():
            if known == expression:
                return f"a.{alias}"
        alias = f"fe_{len(self.columns)}"
        self.columns[alias] = expression
        return f"a.{alias}"

    def t(self, column: str) -> str:
        expression = super().t(column)
        return (
            self._alias(expression) if column == "a.first_exposed_at" and expression != column else expression
        )

    def shift(self, column: str, hours: float) -> str:
        expression = super().shift(column, hours)
        return self._alias(expression) if column == "a.first_exposed_at" else expression


def _property_params(dialect: _Dialect, name: str) -> list:
    if dialect.vendor == "sqlite":
        path = '$."' + name.replace('"', "") + '"'
        return [path, path]
    return [name, name]


def _metric_columns(
    metric: Metric, dialect: _Dialect, cuped_hours: float | None
) -> tuple[str, str, list, list]:
    """The per-profile aggregate expressions (x, y) of one metric, their params and the event types it reads.

    An empty list of event types means "any event" (retention).
    """
    ts, fe = dialect.t("e.timestamp"), dialect.t("a.first_exposed_at")
    post = f"{ts} >= {fe}"
    if metric.window_hours:
        post += f" AND {ts} < {dialect.shift('a.first_exposed_at', metric.window_hours)}"
    pre = f"{ts} < {fe}" + (
        f" AND {ts} >= {dialect.shift('a.first_exposed_at', -cuped_hours)}" if cuped_hours else ""
    )
    null = "CAST(NULL AS DOUBLE PRECISION)"

    def match(event_type: str, with_name: bool) -> tuple[str, list]:
        sql, params = "e.type = %s", [event_type]
        if with_name and metric.event_name:
            sql += " AND e.name = %s"
            params.append(metric.event_name)
        return sql, params

    def value() -> tuple[str, list]:
        if metric.aggregation == Metric.Aggregation.COUNT:
            return "1", []
        if metric.value_property:
            sql, _ = dialect.number_property()
            return sql, _property_params(dialect, metric.value_property)
        return "COALESCE(e.value, 0)", []

    if metric.kind == Metric.Kind.RETENTION:
        day = metric.retention_day or 0
        start = dialect.shift("a.first_exposed_at", 24 * day)
        end = dialect.shift("a.first_exposed_at", 24 * (day + 1))
        return f"MAX(CASE WHEN {ts} >= {start} AND {ts} < {end} THEN 1 ELSE 0 END)", null, [], []
    m_sql, m_params = match(metric.event_type, True)
    if metric.kind == Metric.Kind.CONVERSION:
        x, x_params = f"MAX(CASE WHEN {m_sql} AND {post} THEN 1 ELSE 0 END)", m_params
        y_sql, y_params = f"MAX(CASE WHEN {m_sql} AND {pre} THEN 1 ELSE 0 END)", m_params
    else:
        v_sql, v_params = value()
        x, x_params = f"SUM(CASE WHEN {m_sql} AND {post} THEN {v_sql} ELSE 0 END)", m_params + v_params
        y_sql, y_params = f"SUM(CASE WHEN {m_sql} AND {pre} THEN {v_sql} ELSE 0 END)", m_params + v_params
    if metric.kind == Metric.Kind.RATIO:
        d_sql, d_params = match(metric.denominator_event_type, False)
        y = f"SUM(CASE WHEN {d_sql} AND {post} THEN 1 ELSE 0 END)"
        return x, y, x_params + d_params, [metric.event_type, metric.denominator_event_type]
    if cuped_hours:
        return x, y_sql, x_params + y_params, [metric.event_type]
    return x, null, x_params, [metric.event_type]


def _per_profile_sql(
    *,
    experiment: Experiment,
    metrics: list[tuple[Metric, float | None]],
    as_of: datetime,
    dialect: _Dialect,
    with_profile: bool = False,
) -> tuple[str, list]:
    """One row per exposed profile: its variant and, for each metric i, columns x{i} and y{i}.

    One pass over the events of the exposed profiles serves every metric: each metric's
    window is a CASE inside the aggregate, the join only bounds time and event types. The
    window bounds of each profile are computed once, in the assignment subquery.
    """
    base, dialect = dialect, _ExposureBounds(dialect.vendor)
    ts, fe = dialect.t("e.timestamp"), dialect.t("a.first_exposed_at")
    columns, select_params, types, any_event = [], [], set(), False
    lookback = max([hours or 0 for metric, hours in metrics if metric.kind != Metric.Kind.RATIO], default=0)
    for i, (metric, cuped_hours) in enumerate(metrics):
        x, y, params, event_types = _metric_columns(metric, dialect, cuped_hours)
        columns.append(f"{x} AS x{i}, {y} AS y{i}")
        select_params += params
        any_event |= not event_types
        types.update(event_types)
    lower = dialect.shift("a.first_exposed_at", -lookback) if lookback else fe
    join = f"e.profile_id = a.profile_id AND {ts} >= {lower} AND {ts} < {dialect.param_time()}"
    join_params: list = [_db_time(as_of)]
    if types and not any_event:
        join += " AND e.type IN (" + ", ".join(["%s"] * len(types)) + ")"
        join_params += sorted(types)
    # The segment breakdown needs who and when; without it the narrower rows hash faster.
    who = "a.profile_id AS profile_id, a.first_exposed_at AS fe, " if with_profile else ""
    bounds = "".join(f", {expression} AS {alias}" for alias, expression in dialect.columns.items())
    exposed = (
        f"(SELECT a.id, a.variant_id, a.profile_id, a.first_exposed_at{bounds} "
        f"FROM {Assignment._meta.db_table} a "
        f"WHERE a.experiment_id = %s AND a.phase = %s AND a.holdout = %s "
        f"AND a.first_exposed_at IS NOT NULL AND {base.t('a.first_exposed_at')} <= {base.param_time()}) a"
    )
    sql = (
        f"SELECT a.variant_id AS variant_id, {who}{', '.join(columns)} "
        f"FROM {exposed} LEFT JOIN {Event._meta.db_table} e ON {join} "
        f"GROUP BY a.id, a.variant_id" + (", a.profile_id, a.first_exposed_at" if with_profile else "")
    )
    params = [*select_params, experiment.pk, experiment.phase, False, _db_time(as_of), *join_params]
    return sql, params


def _db_time(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


@dataclass
class MetricData:
    """What the database says about one metric: per-variant sufficient statistics, the
    winsorisation cap, and (when asked) the distribution of per-profile values."""

    stats: dict[int, stats.VariantStats]
    cap: float | None = None
    distribution: dict[int, list[tuple[float, int]]] | None = None
    # segment id -> variant id -> statistics of the profiles in the segment at first exposure
    by_segment: dict[int, dict[int, stats.VariantStats]] | None = None


def metrics_sufficient_stats(
    *,
    experiment: Experiment,
    metrics: list[Metric],
    as_of: datetime,
    cuped: bool | None = None,
    distribution_of: Metric | None = None,
    distribution_limit: int = 2000,
    segment_ids: list[int] | None = None,
) -> dict[str, MetricData]:
    """Per-variant sufficient statistics of every metric for the current phase, as of ``as_of``.

    The database does the work: one pass over the events into a temporary per-profile table,
    then a few cheap aggregates over it (sums, winsorisation caps, the distribution). Never a
    Python loop over events or profiles.

    With ``segment_ids`` every metric is also summed per segment, over the profiles that were
    members of the segment at their first exposure (membership entered before it and not yet
    exited). Membership after exposure is ignored on purpose: the treatment itself may have
    moved a profile into a segment, and splitting on that would bias the comparison.
    """
    use_cuped = experiment.cuped if cuped is None else cuped
    lookback = settings.EXPERIMENTS_CUPED_LOOKBACK_DAYS * 24
    plan = [
        (m, lookback if use_cuped and m.kind in (Metric.Kind.CONVERSION, Metric.Kind.MEAN) else None)
        for m in metrics
    ]
    if not plan:
        return {}
    dialect = _Dialect(connection.vendor)
    segment_ids = [int(i) for i in segment_ids or []]
    inner, params = _per_profile_sql(
        experiment=experiment, metrics=plan, as_of=as_of, dialect=dialect, with_profile=bool(segment_ids)
    )
    table = f"exp_pp_{uuid.uuid4().hex[:16]}"
    out: dict[str, MetricData] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        suffix = " ON COMMIT DROP" if dialect.vendor == "postgresql" else ""
        work_mem = settings.EXPERIMENTS_ANALYSIS_WORK_MEM
        if dialect.vendor == "postgresql" and re.fullmatch(r"\d+(kB|MB|GB)", work_mem):
            # Per transaction: lets the per-profile GROUP BY hash in memory instead of sorting on disk.
            cursor.execute(f"SET LOCAL work_mem = '{work_mem}'")
        cursor.execute(f"CREATE TEMPORARY TABLE {table}{suffix} AS {inner}", params)
        try:
            # Winsorisation caps first (one count for all), then every metric's sums in a single
            # scan of the per-profile table.
            values, total = [], None
            for i, (metric, _) in enumerate(plan):
                x, cap = f"x{i}", None
                if metric.winsorize_percentile and metric.kind == Metric.Kind.MEAN:
                    if total is None:
                        cursor.execute(f"SELECT COUNT(*) FROM {table}")
                        total = cursor.fetchone()[0]
                    if total:
                        offset = min(math.floor(metric.winsorize_percentile / 100 * (total - 1)), total - 1)
                        cursor.execute(f"SELECT x{i} FROM {table} ORDER BY x{i} LIMIT 1 OFFSET {offset}")
                        cap = float(cursor.fetchone()[0])
                        x = dialect.least(f"x{i}", repr(cap))
                values.append((x, cap))
            sums = ", ".join(
                f"SUM({x}), SUM({x} * {x}), SUM(y{i}), SUM(y{i} * y{i}), SUM({x} * y{i})"
                for i, (x, _) in enumerate(values)
            )
            cursor.execute(f"SELECT variant_id, COUNT(*), {sums} FROM {table} GROUP BY variant_id")
            by_variant = cursor.fetchall()
            for i, (metric, cuped_hours) in enumerate(plan):
                x, cap = values[i]
                has_y = metric.kind == Metric.Kind.RATIO or cuped_hours is not None
                data = MetricData(stats={}, cap=cap)
                for row in by_variant:
                    s, ss, sy, syy, sxy = row[2 + 5 * i : 7 + 5 * i]
                    data.stats[row[0]] = stats.VariantStats(
                        n=int(row[1]),
                        sum=float(s or 0),
                        sum_sq=float(ss or 0),
                        sum_y=float(sy or 0) if has_y else None,
                        sum_y_sq=float(syy or 0) if has_y else None,
                        sum_xy=float(sxy or 0) if has_y else None,
                    )
                if segment_ids:
                    data.by_segment = _segment_sums(
                        cursor, table=table, x=x, i=i, has_y=has_y, segment_ids=segment_ids, dialect=dialect
                    )
                if distribution_of is not None and metric.pk == distribution_of.pk:
                    rounded = f"ROUND(CAST(x{i} AS NUMERIC), 2)"
                    cursor.execute(
                        f"SELECT variant_id, {rounded} AS v, COUNT(*) AS c FROM {table} "
                        f"GROUP BY variant_id, {rounded} ORDER BY c DESC LIMIT {int(distribution_limit)}"
                    )
                    data.distribution = {}
                    for variant_id, v, c in cursor.fetchall():
                        data.distribution.setdefault(variant_id, []).append((float(v or 0), int(c)))
                out[metric.key] = data
        finally:
            if dialect.vendor != "postgresql":
                cursor.execute(f"DROP TABLE {table}")
    return out


def _segment_sums(
    cursor, *, table: str, x: str, i: int, has_y: bool, segment_ids: list[int], dialect: _Dialect
) -> dict[int, dict[int, stats.VariantStats]]:
    """Per (segment, variant) sums of one metric over the per-profile table (members at exposure)."""
    fe = dialect.t("t.fe")
    cursor.execute(
        f"SELECT m.segment_id, t.variant_id, COUNT(*), SUM({x}), SUM({x} * {x}), SUM(y{i}), "
        f"SUM(y{i} * y{i}), SUM({x} * y{i}) FROM {table} t "
        f"JOIN {SegmentMembership._meta.db_table} m ON m.profile_id = t.profile_id "
        f"AND m.segment_id IN ({', '.join(['%s'] * len(segment_ids))}) "
        f"AND {dialect.t('m.entered_at')} <= {fe} "
        f"AND (m.exited_at IS NULL OR {dialect.t('m.exited_at')} > {fe}) "
        "GROUP BY m.segment_id, t.variant_id",
        segment_ids,
    )
    out: dict[int, dict[int, stats.VariantStats]] = {}
    for segment_id, variant_id, n, s, ss, sy, syy, sxy in cursor.fetchall():
        out.setdefault(segment_id, {})[variant_id] = stats.VariantStats(
            n=int(n),
            sum=float(s or 0),
            sum_sq=float(ss or 0),
            sum_y=float(sy or 0) if has_y else None,
            sum_y_sq=float(syy or 0) if has_y else None,
            sum_xy=float(sxy or 0) if has_y else None,
        )
    return out


def metric_sufficient_stats(
    *, experiment: Experiment, metric: Metric, as_of: datetime, cuped: bool | None = None
) -> tuple[dict[int, stats.VariantStats], float | None]:
    """One metric's per-variant sufficient statistics and winsorisation cap."""
    data = metrics_sufficient_stats(experiment=experiment, metrics=[metric], as_of=as_of, cuped=cuped)[
        metric.key
    ]
    return data.stats, data.cap


# --- Analysis ------------------------------------------------------------------------------------


def _pct(value: float | None, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "∞" if value is not None and value > 0 else "-∞"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def verdict_text(
    *, variant_name: str, metric_name: str, cell: dict, alpha: float, higher_is_better: bool
) -> tuple[str, str]:
    """A plain-language sentence about one treatment on one metric, and its tone (good/bad/neutral)."""
    freq, bayes = cell.get("frequentist"), cell.get("bayesian")
    if cell.get("error") or not freq:
        return (
            f"{variant_name}: not enough data on {metric_name} yet ({cell.get('error') or 'no comparison'}).",
            "neutral",
        )
    level = round((1 - alpha) * 100)
    chance = bayes["chance_to_win"] if higher_is_better else 1 - bayes["chance_to_win"]
    ci = f"{level}% CI {_pct(freq['ci_low'])} to {_pct(freq['ci_high'])}"
    p = cell.get("p_adjusted") if cell.get("p_adjusted") is not None else freq["p_value"]
    lift = freq["lift"]
    if p < alpha:
        verb = "raised" if lift > 0 else "lowered"
        good = (lift > 0) == higher_is_better
        return (
            f"{variant_name} {verb} {metric_name} by {_pct(abs(lift), signed=False)} ({ci}); "
            f"{chance * 100:.0f}% chance to beat control.",
            "good" if good else "bad",
        )
    return (
        f"No significant difference yet between {variant_name} and control on {metric_name}: "
        f"{_pct(lift)} ({ci}); {chance * 100:.0f}% chance to beat control.",
        "neutral",
    )


def _multiple_exposures(experiment: Experiment) -> int:
    """Profiles that were shown a variant other than their assigned one (e.g. after an identity merge)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(DISTINCT x.profile_id) FROM {Exposure._meta.db_table} x "
            f"JOIN {Assignment._meta.db_table} a ON a.experiment_id = x.experiment_id "
            "AND a.phase = x.phase AND a.profile_id = x.profile_id "
            "WHERE x.experiment_id = %s AND x.phase = %s AND x.variant_id <> a.variant_id",
            [experiment.pk, experiment.phase],
        )
        return int(cursor.fetchone()[0])


def experiment_analysis_compute(*, experiment: Experiment, as_of: datetime) -> dict:
    """The full analysis of the current phase as a JSON-ready dict (nothing is stored)."""
    if experiment.kind != Experiment.Kind.AB:
        return _mode_analysis_compute(experiment=experiment, as_of=as_of)
    variants = list(experiment.variants.all())
    links = list(experiment.experiment_metrics.select_related("metric").order_by("role", "metric__name"))
    role_order = {"primary": 0, "guardrail": 1, "secondary": 2}
    links.sort(key=lambda em: (role_order.get(em.role, 9), em.metric.name))
    exposed = dict(
        Assignment.objects.filter(
            experiment=experiment, phase=experiment.phase, holdout=False, first_exposed_at__lte=as_of
        )
        .values_list("variant")
        .annotate(n=Count("id"))
    )
    counts = [exposed.get(v.pk, 0) for v in variants]
    summary_metrics = []
    distributions = {}
    caps = {}
    primary = next((em.metric for em in links if em.role == ExperimentMetric.Role.PRIMARY), None)
    segments = breakdown_segments(experiment=experiment)
    data = metrics_sufficient_stats(
        experiment=experiment,
        metrics=[em.metric for em in links],
        as_of=as_of,
        distribution_of=primary,
        segment_ids=[segment.pk for segment, _ in segments],
    )
    empty = stats.VariantStats(n=0, sum=0.0, sum_sq=0.0)
    for em in links:
        metric_data = data[em.metric.key]
        caps[em.metric.key] = metric_data.cap
        summary_metrics.append(
            {
                "key": em.metric.key,
                "name": em.metric.name,
                "kind": "ratio" if em.metric.kind == Metric.Kind.RATIO else "mean",
                "cuped": experiment.cuped,
                "higher_is_better": em.metric.higher_is_better,
                "variants": [
                    {"key": v.key, **metric_data.stats.get(v.pk, empty).to_dict()} for v in variants
                ],
            }
        )
        if metric_data.distribution is not None:
            dist = metric_data.distribution
            distributions[em.metric.key] = {v.key: sorted(dist.get(v.pk, [])) for v in variants}
    result: dict = {
        "experiment": experiment.key,
        "phase": experiment.phase,
        "as_of": as_of.isoformat(),
        "variants": [
            {"key": v.key, "name": v.name, "weight": v.weight, "exposed": exposed.get(v.pk, 0)}
            for v in variants
        ],
        "warnings": [],
        "verdicts": [],
        "metrics": [],
    }
    if len(variants) < 2 or not summary_metrics:
        result["warnings"].append(
            {"kind": "setup", "message": "Add variants and a primary metric to analyse."}
        )
        return result
    analysis = stats.summary_analyze(
        {
            "alpha": experiment.alpha,
            "correction": experiment.correction,
            "sequential_tuning_n": settings.EXPERIMENTS_SEQUENTIAL_TUNING_N,
            "weights": [v.weight for v in variants],
            "metrics": summary_metrics,
        }
    )
    srm = stats.srm_check(counts, [v.weight for v in variants]) if sum(counts) else None
    result.update({k: analysis[k] for k in ("alpha", "correction", "sequential_tuning_n")})
    result["srm"] = analysis["srm"] if srm is None else asdict(srm)
    names = {v.key: v.name for v in variants}
    for link, metric_result in zip(links, analysis["metrics"], strict=True):
        metric_result["role"] = link.role
        metric_result["winsorize_cap"] = caps.get(link.metric.key)
        metric_result["distribution"] = distributions.get(link.metric.key)
        result["metrics"].append(metric_result)
        for cell in metric_result["variants"][1:]:
            text, tone = verdict_text(
                variant_name=names.get(cell["key"], cell["key"]),
                metric_name=link.metric.name,
                cell=cell,
                alpha=experiment.alpha,
                higher_is_better=link.metric.higher_is_better,
            )
            result["verdicts"].append(
                {
                    "metric": link.metric.key,
                    "role": link.role,
                    "variant": cell["key"],
                    "text": text,
                    "tone": tone,
                }
            )
            if link.role == ExperimentMetric.Role.GUARDRAIL and tone == "bad":
                result["warnings"].append({"kind": "guardrail", "message": f"Guardrail breached: {text}"})
    result["warnings"] += _warnings(experiment, result, counts)
    result["segments"] = _segments_analyze(experiment, variants, links, data, segments)
    return result


def _mode_analysis_compute(*, experiment: Experiment, as_of: datetime) -> dict:
    """Interleaving and bandit analyses: the same envelope as an A/B analysis, without metrics.
    Their breakdown by segment is inside their own section (``interleaving.segments``,
    ``bandit.segments``): its shape differs from the A/B one (wins per team, trials per arm)."""
    from . import modes

    variants = list(experiment.variants.all())
    result: dict = {
        "experiment": experiment.key,
        "phase": experiment.phase,
        "as_of": as_of.isoformat(),
        "kind": experiment.kind,
        "alpha": experiment.alpha,
        "variants": [
            {"key": v.key, "name": v.name, "weight": v.weight, "payload": v.payload} for v in variants
        ],
        "warnings": [],
        "verdicts": [],
        "metrics": [],
    }
    segments = breakdown_segments(experiment=experiment)
    if experiment.kind == Experiment.Kind.INTERLEAVING:
        names = modes.interleaving_recommenders(experiment=experiment)
        if names is None:
            result["warnings"].append({"kind": "setup", "message": "Name a recommender in both variants."})
            return result
        result["interleaving"] = modes.interleaving_analysis(
            experiment=experiment, as_of=as_of, segments=segments
        )
        result["interleaving"]["recommenders"] = list(names)
        text, tone = modes.interleaving_verdict(
            result=result["interleaving"], names=names, alpha=experiment.alpha
        )
    else:
        result["bandit"] = modes.bandit_analysis(experiment=experiment, as_of=as_of, segments=segments)
        text, tone = modes.bandit_verdict(result=result["bandit"])
    result["verdicts"].append(
        {"metric": None, "role": "primary", "variant": None, "text": text, "tone": tone}
    )
    return result


def breakdown_segments(*, experiment: Experiment) -> list[tuple[Segment, str]]:
    """The segments the report breaks results down by: the targeted ones, then the analyst's."""
    targeted = [int(i) for i in experiment.segment_ids if str(i).isdigit()]
    chosen = [int(i) for i in experiment.breakdown_segment_ids if str(i).isdigit() and int(i) not in targeted]
    by_id = Segment.objects.in_bulk(targeted + chosen)
    return [(by_id[i], "targeted") for i in targeted if i in by_id] + [
        (by_id[i], "chosen") for i in chosen if i in by_id
    ]


def _segments_analyze(
    experiment: Experiment,
    variants: list[Variant],
    links: list[ExperimentMetric],
    data: dict[str, MetricData],
    segments: list[tuple[Segment, str]],
) -> list[dict]:
    """Every metric within each segment: per-variant n and mean, lift and interval against the
    control (uncorrected: a breakdown is for exploring, the headline verdicts stay corrected)."""
    out = []
    for segment, origin in segments:
        metrics = []
        for em in links:
            cells = (data[em.metric.key].by_segment or {}).get(segment.pk, {})
            empty = stats.VariantStats(n=0, sum=0.0, sum_sq=0.0)
            summary = {
                "alpha": experiment.alpha,
                "correction": "none",
                "sequential_tuning_n": settings.EXPERIMENTS_SEQUENTIAL_TUNING_N,
                "metrics": [
                    {
                        "key": em.metric.key,
                        "name": em.metric.name,
                        "kind": "ratio" if em.metric.kind == Metric.Kind.RATIO else "mean",
                        "cuped": experiment.cuped,
                        "variants": [{"key": v.key, **cells.get(v.pk, empty).to_dict()} for v in variants],
                    }
                ],
            }
            try:
                analysed = stats.summary_analyze(summary)["metrics"][0]
            except stats.StatsError:
                continue
            metrics.append(
                {
                    "key": em.metric.key,
                    "name": em.metric.name,
                    "role": em.role,
                    "variants": [
                        {
                            "key": c["key"],
                            "n": c["n"],
                            "mean": c["mean"],
                            "lift": (c.get("frequentist") or {}).get("lift"),
                            "ci_low": (c.get("frequentist") or {}).get("ci_low"),
                            "ci_high": (c.get("frequentist") or {}).get("ci_high"),
                            "p_value": (c.get("frequentist") or {}).get("p_value"),
                            "error": c.get("error"),
                        }
                        for c in analysed["variants"]
                    ],
                }
            )
        out.append(
            {"id": segment.pk, "key": segment.key, "name": segment.name, "origin": origin, "metrics": metrics}
        )
    return out


def _warnings(experiment: Experiment, result: dict, counts: list[int]) -> list[dict]:
    warnings = []
    srm = result.get("srm") or {}
    if srm.get("alert"):
        warnings.append(
            {
                "kind": "srm",
                "message": (
                    f"Sample-ratio mismatch: the variants got {', '.join(map(str, counts))} profiles "
                    f"where the weights predict {', '.join(f'{e:.0f}' for e in srm['expected'])} "
                    f"(p = {srm['p_value']:.2g}). "
                    "Assignment or exposure logging is broken; do not trust these results."
                ),
            }
        )
    several = _multiple_exposures(experiment)
    if several:
        warnings.append(
            {
                "kind": "multiple_exposures",
                "message": (
                    f"{several} profile(s) were exposed to more than one variant "
                    "(e.g. after an identity merge)."
                ),
            }
        )
    primary = next((m for m in result["metrics"] if m.get("role") == "primary"), None)
    if primary:
        control = primary["variants"][0]
        st = (
            stats.VariantStats(**{k: control["stats"][k] for k in ("n", "sum", "sum_sq")})
            if control["n"]
            else None
        )
        target = settings.EXPERIMENTS_TARGET_MDE
        significant = any(
            (c.get("frequentist") or {}).get("p_value", 1) < experiment.alpha for c in primary["variants"][1:]
        )
        if st is not None and st.n >= 2 and st.mean and not significant:
            n = min(counts) if counts else 0
            power = stats.achieved_power(
                baseline_mean=st.mean,
                baseline_sd=math.sqrt(st.var),
                n_per_variant=max(n, 2),
                mde=target,
                alpha=experiment.alpha,
            )
            if power < 0.8:
                needed = stats.sample_size(
                    baseline_mean=st.mean,
                    baseline_sd=math.sqrt(st.var) or 1e-9,
                    mde=target,
                    alpha=experiment.alpha,
                )
                warnings.append(
                    {
                        "kind": "low_power",
                        "message": (
                            f"Low power: with {n} profiles per variant the test has {power * 100:.0f}% "
                            f"power to detect a {target * 100:.0f}% lift on {primary['name']}; "
                            f"about {needed} per variant "
                            "are needed."
                        ),
                    }
                )
    return warnings


def experiment_analyze(
    *, experiment_id: int, as_of: datetime | None = None, trigger: str = AnalysisSnapshot.Trigger.MANUAL
) -> AnalysisSnapshot:
    """Compute and store the analysis as of ``as_of``. Re-running the same as-of time overwrites it."""
    experiment = Experiment.objects.get(pk=experiment_id)
    as_of = (as_of or timezone.now()).replace(second=0, microsecond=0)
    started = time.monotonic()
    results = experiment_analysis_compute(experiment=experiment, as_of=as_of)
    duration = time.monotonic() - started
    variants = {v.key: v for v in experiment.variants.all()}
    metrics = {m.key: m for m in experiment.metrics.all()}
    with transaction.atomic():
        snapshot, _ = AnalysisSnapshot.objects.update_or_create(
            experiment=experiment,
            phase=experiment.phase,
            as_of=as_of,
            defaults={
                "results": results,
                "trigger": trigger,
                "computed_at": timezone.now(),
                "duration_seconds": duration,
            },
        )
        snapshot.variant_results.all().delete()
        rows = []
        for metric_result in results["metrics"]:
            for cell in metric_result["variants"]:
                freq, bayes = cell.get("frequentist") or {}, cell.get("bayesian") or {}
                s = cell["stats"]
                rows.append(
                    VariantResult(
                        snapshot=snapshot,
                        metric=metrics[metric_result["key"]],
                        variant=variants[cell["key"]],
                        n=s["n"],
                        sum=s["sum"],
                        sum_sq=s["sum_sq"],
                        sum_y=s.get("sum_y"),
                        sum_y_sq=s.get("sum_y_sq"),
                        sum_xy=s.get("sum_xy"),
                        mean=cell["mean"],
                        lift=freq.get("lift"),
                        ci_low=freq.get("ci_low"),
                        ci_high=freq.get("ci_high"),
                        p_value=freq.get("p_value"),
                        chance_to_win=bayes.get("chance_to_win"),
                    )
                )
        VariantResult.objects.bulk_create(rows)
    return snapshot


def experiments_analyze_due(*, now: datetime | None = None) -> list[int]:
    """The running experiments to analyse now (the hourly beat task enqueues one task each)."""
    return list(Experiment.objects.filter(status=Status.RUNNING).values_list("pk", flat=True))


def snapshot_latest(*, experiment: Experiment) -> AnalysisSnapshot | None:
    return experiment.snapshots.filter(phase=experiment.phase).order_by("-as_of").first()


def snapshot_history(*, experiment: Experiment) -> list[AnalysisSnapshot]:
    return list(experiment.snapshots.filter(phase=experiment.phase).order_by("as_of"))


def results_csv(*, snapshot: AnalysisSnapshot) -> str:
    """One row per (metric, variant) of a snapshot, for analysts."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "experiment", "phase", "as_of", "metric", "role", "variant", "n", "mean", "sum", "sum_sq",
            "lift", "ci_low", "ci_high", "p_value", "p_adjusted", "chance_to_win", "risk_treatment",
            "sequential_ci_low", "sequential_ci_high", "segment",
        ]
    )  # fmt: skip
    results = snapshot.results
    for metric in results.get("metrics", []):
        for cell in metric["variants"]:
            f, b, s = cell.get("frequentist") or {}, cell.get("bayesian") or {}, cell.get("sequential") or {}
            writer.writerow(
                [
                    results["experiment"], results["phase"], results["as_of"], metric["key"],
                    metric.get("role"),
                    cell["key"], cell["n"], cell["mean"], cell["stats"]["sum"], cell["stats"]["sum_sq"],
                    f.get("lift"), f.get("ci_low"), f.get("ci_high"), f.get("p_value"),
                    cell.get("p_adjusted"),
                    b.get("chance_to_win"), b.get("risk_treatment"), s.get("ci_low"), s.get("ci_high"), "",
                ]
            )  # fmt: skip
    # The segment breakdown: the same columns where they apply, the segment key last.
    for segment in results.get("segments", []):
        for metric in segment["metrics"]:
            for cell in metric["variants"]:
                writer.writerow(
                    [
                        results["experiment"], results["phase"], results["as_of"], metric["key"],
                        metric.get("role"), cell["key"], cell["n"], cell["mean"], "", "",
                        cell.get("lift"), cell.get("ci_low"), cell.get("ci_high"), cell.get("p_value"),
                        "", "", "", "", "", segment["key"],
                    ]
                )  # fmt: skip
    return out.getvalue()


def exposure_span(*, experiment: Experiment) -> tuple[datetime | None, datetime | None]:
    agg = Assignment.objects.filter(experiment=experiment, phase=experiment.phase).aggregate(
        first=Min("first_exposed_at"), last=Max("last_exposed_at")
    )
    return agg["first"], agg["last"]


def analysis_backfill(*, experiment: Experiment, points: int = 12, now: datetime | None = None) -> int:
    """Compute snapshots at evenly spaced times since the first exposure (demo data, evolution charts)."""
    first, _ = exposure_span(experiment=experiment)
    now = now or timezone.now()
    if first is None:
        return 0
    step = (now - first) / points
    for i in range(1, points + 1):
        experiment_analyze(experiment_id=experiment.pk, as_of=first + step * i + timedelta(minutes=1))
    return points


# --- Report --------------------------------------------------------------------------------------


def experiment_report(*, experiment: Experiment) -> dict:
    """Everything the report page shows: the latest results, verdicts, warnings and chart figures."""
    from . import charts  # plotly is only needed when a report is rendered

    history = snapshot_history(experiment=experiment)
    latest = history[-1] if history else None
    report: dict = {"snapshot": latest, "results": latest.results if latest else None, "charts": {}}
    if experiment.kind == Experiment.Kind.BANDIT:
        from . import modes

        allocations = modes.bandit_history(experiment=experiment)
        if allocations:
            keys = [(v.key, v.name) for v in experiment.variants.all()]
            report["charts"]["allocation"] = charts.allocation_over_time(
                times=[a.computed_at.isoformat() for a in allocations],
                series=[(name, [a.shares.get(key) for a in allocations]) for key, name in keys],
            )
    if latest is not None and latest.results.get("interleaving"):
        section = latest.results["interleaving"]
        daily = section.get("daily") or []
        report["charts"]["interleaving"] = charts.interleaving_credits(
            days=[d[0] for d in daily],
            a=[d[1] for d in daily],
            b=[d[2] for d in daily],
            names=section.get("recommenders") or ["A", "B"],
        )
    if latest is None or not latest.results.get("metrics"):
        return report
    results = latest.results
    variants = list(experiment.variants.all())
    names = {v.pk: v.name for v in variants}
    primary = next((m for m in results["metrics"] if m.get("role") == "primary"), results["metrics"][0])
    metric = Metric.objects.filter(key=primary["key"]).first()
    rows = (
        VariantResult.objects.filter(snapshot__in=history, metric=metric)
        .select_related("snapshot")
        .order_by("snapshot__as_of", "variant__position")
    )
    times = [s.as_of.isoformat() for s in history]
    by_variant: dict[int, dict[str, VariantResult]] = {}
    for row in rows:
        by_variant.setdefault(row.variant_id, {})[row.snapshot.as_of.isoformat()] = row
    report["charts"]["over_time"] = charts.metric_over_time(
        times=times,
        series=[(names[v.pk], [_get(by_variant, v.pk, t, "mean") for t in times]) for v in variants],
        metric_name=primary["name"],
    )
    report["charts"]["lift"] = charts.lift_over_time(
        times=times,
        series=[
            (
                names[v.pk],
                [_get(by_variant, v.pk, t, "lift") for t in times],
                [_get(by_variant, v.pk, t, "ci_low") for t in times],
                [_get(by_variant, v.pk, t, "ci_high") for t in times],
            )
            for v in variants[1:]
        ],
    )
    tones = {(v["metric"], v["variant"]): v["tone"] for v in results.get("verdicts", [])}
    key_names = {v.key: v.name for v in variants}
    forest_rows = []
    for m in results["metrics"]:
        for cell in m["variants"][1:]:
            freq = cell.get("frequentist")
            if freq:
                forest_rows.append(
                    (
                        f"{m['name']} · {key_names.get(cell['key'], cell['key'])}",
                        freq["lift"],
                        freq["ci_low"],
                        freq["ci_high"],
                        tones.get((m["key"], cell["key"]), "neutral"),
                    )
                )
    if forest_rows:
        report["charts"]["forest"] = charts.forest(rows=forest_rows)
    segment_rows = [
        (
            f"{segment['name']} · {key_names.get(cell['key'], cell['key'])}",
            cell["lift"],
            cell["ci_low"],
            cell["ci_high"],
            "neutral",
        )
        for segment in results.get("segments", [])
        for m in segment["metrics"][:1]  # the primary metric comes first
        for cell in m["variants"][1:]
        if cell.get("lift") is not None
    ]
    if segment_rows:
        report["charts"]["segments"] = charts.forest(rows=segment_rows)
    if primary.get("distribution"):
        report["charts"]["distribution"] = charts.distribution(
            series=[
                (key_names.get(k, k), [tuple(p) for p in pairs])
                for k, pairs in primary["distribution"].items()
            ],
            metric_name=primary["name"],
        )
    return report


def _get(by_variant: dict, variant_id: int, when: str, field: str):
    row = by_variant.get(variant_id, {}).get(when)
    return getattr(row, field) if row is not None else None


def power_plan(
    *,
    baseline: float,
    sd: float | None,
    mde_percent: float | None,
    n_per_variant: int | None,
    alpha: float,
    power: float,
) -> dict:
    """The power calculator: a sample size for a lift, or the detectable lift for a sample size."""
    sd = sd if sd is not None else stats.conversion_sd(baseline)
    plan = {"baseline": baseline, "sd": sd, "alpha": alpha, "power": power}
    if mde_percent:
        plan["n_per_variant"] = stats.sample_size(
            baseline_mean=baseline, baseline_sd=sd, mde=mde_percent / 100, alpha=alpha, power=power
        )
        plan["mde_percent"] = mde_percent
    else:
        plan["n_per_variant"] = n_per_variant
        plan["mde_percent"] = 100 * stats.minimum_detectable_effect(
            baseline_mean=baseline, baseline_sd=sd, n_per_variant=n_per_variant, alpha=alpha, power=power
        )
    return plan
