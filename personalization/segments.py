"""Segments: rule validation, compilation to ORM queries, refresh with membership history.

A rule is JSON in schema version 1 (docs/segments.md). It is validated against whitelists of
condition kinds, fields and operators, then compiled to a ``Q`` over ``Profile`` built from
``pk__in`` subqueries and ``Exists``: user input only ever reaches the database as query
parameters, never as SQL text. Every condition compiles to a subquery of profile ids, so NOT
has plain two-valued logic (no NULL surprises) and SQLite and PostgreSQL agree.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import CharField, Count, Exists, F, FloatField, Max, OuterRef, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Substr
from django.utils import timezone

from catalog.models import ItemTag, Tag
from recsite import outbox

from .models import (
    DeclaredPreference,
    DiscoveryJob,
    Event,
    Profile,
    Segment,
    SegmentMembership,
    SegmentRefresh,
)

SCHEMA_VERSION = 1
MAX_DEPTH = 5
MAX_CONDITIONS = 50
TRAIT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PROPERTY_NAME = TRAIT_NAME
TRAIT_OPS = ("eq", "neq", "contains", "starts_with", "gt", "lt", "between", "is_set", "in", "before", "after")
# Event property filters take the same operators as traits.
PROPERTY_OPS = TRAIT_OPS
COUNT_OPS = ("at_least", "at_most", "exactly")
COMPARE_OPS = ("gte", "lte")
EVENT_TYPES = tuple(Event.Type.values)
ENGAGEMENT_METRICS = ("completion_rate", "watch_time", "active_days", "active_days_per_week")
# Watch time is summed from this event property unless the condition names another, over the
# playback events that report how much was watched. Pauses are left out: a pause reports a
# playhead that the viewing's complete or abandon event reports again (docs/segments.md).
WATCH_PROPERTY = "watch_seconds"
WATCH_EVENT_TYPES = (Event.Type.PLAY, Event.Type.COMPLETE, Event.Type.ABANDON)
# Numeric JSON values outside this range are ignored by watch time (see _engagement_q).
WATCH_SECONDS_MAX = 10**9
RFM_SCORES = ("recency", "frequency", "monetary")
# First match wins, in this order (a common simplification of the classic RFM grid on R and F).
RFM_GROUPS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "champions": ((4, 5), (4, 5)),
    "loyal": ((3, 5), (3, 5)),
    "new": ((4, 5), (1, 2)),
    "at_risk": ((1, 2), (3, 5)),
    "lost": ((1, 1), (1, 2)),
    "hibernating": ((1, 3), (1, 2)),
}
KINDS = (
    "trait",
    "performed",
    "not_performed",
    "first_time_within",
    "stopped",
    "restarted",
    "sequence",
    "engagement",
    "rfm",
    "frustration",
    "member_of",
    "experiment_variant",
    "declared_preference",
)


class RuleError(ValueError):
    """A rule is invalid; ``path`` names the part, e.g. ``conditions[1].value``."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class SegmentBusy(Exception):
    """A refresh of this segment is already running."""


@dataclass
class CompileContext:
    now: datetime
    segment_id: int | None = None
    tags: dict[str, str] = field(default_factory=dict)  # slug_path -> treebeard path


# --- Validation --------------------------------------------------------------------------------


def _need(cond: dict, key: str, path: str) -> Any:
    if key not in cond or cond[key] in (None, ""):
        raise RuleError(f"{path}.{key}", "is required.")
    return cond[key]


def _int(value: Any, path: str, *, low: int = 0, high: int = 100_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RuleError(path, f"must be a whole number between {low} and {high}.")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(path, "must be a number.")
    return float(value)


def _date(value: Any, path: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise RuleError(path, "must be a date (YYYY-MM-DD).") from None


def _choice(value: Any, choices: tuple[str, ...], path: str) -> str:
    if value not in choices:
        raise RuleError(path, f"must be one of {', '.join(choices)}.")
    return value


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
        raise RuleError(path, "must be a string or a number.")
    return value


def _tag(slug_path: Any, path: str, ctx: CompileContext) -> str:
    if not isinstance(slug_path, str) or not slug_path.strip():
        raise RuleError(path, "must be a tag path such as genre/anime.")
    slug_path = slug_path.strip().strip("/").lower()
    if slug_path not in ctx.tags:
        tree_path = Tag.objects.filter(slug_path=slug_path).values_list("path", flat=True).first()
        if tree_path is None:
            raise RuleError(path, f"unknown tag {slug_path!r}.")
        ctx.tags[slug_path] = tree_path
    return slug_path


def _window(cond: dict, path: str, *, required: bool = True) -> None:
    """``last_days`` (D days back from now) or ``from`` and ``to`` (dates, inclusive, UTC days)."""
    if "last_days" in cond and ("from" in cond or "to" in cond):
        key = "from" if "from" in cond else "to"
        raise RuleError(f"{path}.{key}", "give either last_days or from and to, not both.")
    if "last_days" in cond:
        _int(cond["last_days"], f"{path}.last_days", low=1, high=3650)
    elif "from" in cond or "to" in cond:
        start = _date(_need(cond, "from", path), f"{path}.from")
        end = _date(_need(cond, "to", path), f"{path}.to")
        if end < start:
            raise RuleError(f"{path}.to", "must not be before 'from'.")
    elif required:
        raise RuleError(f"{path}.last_days", "is required (or 'from' and 'to').")


def _event_filter(cond: dict, path: str, ctx: CompileContext, prefix: str = "") -> None:
    """The event part of a behaviour condition: ``event`` (a canonical type) or ``name``."""
    type_key, name_key = f"{prefix}event", f"{prefix}name"
    if cond.get(type_key):
        _choice(cond[type_key], EVENT_TYPES, f"{path}.{type_key}")
    elif cond.get(name_key):
        if not isinstance(cond[name_key], str) or len(cond[name_key]) > 200:
            raise RuleError(f"{path}.{name_key}", "must be an event name (up to 200 characters).")
    else:
        raise RuleError(f"{path}.{type_key}", "is required (an event type, or 'name').")
    if not prefix:
        filters = cond.get("properties", [])
        if not isinstance(filters, list):
            raise RuleError(f"{path}.properties", "must be a list.")
        for n, prop in enumerate(filters):
            ppath = f"{path}.properties[{n}]"
            if not isinstance(prop, dict):
                raise RuleError(ppath, "must be an object.")
            name = _need(prop, "property", ppath)
            if not isinstance(name, str) or not PROPERTY_NAME.match(name):
                raise RuleError(f"{ppath}.property", "must be a property name (letters, digits, _).")
            _json_value(_choice(prop.get("op"), PROPERTY_OPS, f"{ppath}.op"), prop.get("value"), ppath)
        if cond.get("item_tag") is not None:
            _tag(cond["item_tag"], f"{path}.item_tag", ctx)


def _json_value(op: str, value: Any, path: str) -> None:
    """The value of a trait or event-property comparison ``op``."""
    vpath = f"{path}.value"
    if op in ("gt", "lt"):
        _number(value, vpath)
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(vpath, "must be a list of two numbers [low, high].")
        if _number(value[0], f"{vpath}[0]") > _number(value[1], f"{vpath}[1]"):
            raise RuleError(vpath, "low must not exceed high.")
    elif op == "in":
        if not isinstance(value, list) or not value or len(value) > 500:
            raise RuleError(vpath, "must be a non-empty list (up to 500 values).")
        for n, item in enumerate(value):
            _scalar(item, f"{vpath}[{n}]")
    elif op in ("before", "after"):
        _date(value, vpath)
    elif op in ("contains", "starts_with"):
        if not isinstance(value, str) or not value:
            raise RuleError(vpath, "must be a non-empty string.")
    elif op != "is_set":
        _scalar(value, vpath)


def _validate_condition(cond: dict, path: str, ctx: CompileContext) -> None:
    kind = _choice(cond.get("kind"), KINDS, f"{path}.kind")
    if kind == "trait":
        name = _need(cond, "field", path)
        if not isinstance(name, str) or not TRAIT_NAME.match(name):
            raise RuleError(f"{path}.field", "must be a trait name (letters, digits, _).")
        _json_value(_choice(cond.get("op"), TRAIT_OPS, f"{path}.op"), cond.get("value"), path)
    elif kind in ("performed", "not_performed", "first_time_within"):
        _event_filter(cond, path, ctx)
        _window(cond, path, required=kind == "first_time_within")
        if kind == "performed":
            _choice(cond.get("count_op", "at_least"), COUNT_OPS, f"{path}.count_op")
            _int(cond.get("count", 1), f"{path}.count", low=0)
    elif kind == "stopped":
        _event_filter(cond, path, ctx)
        long_days = _int(_need(cond, "long_days", path), f"{path}.long_days", low=2, high=3650)
        recent = _int(_need(cond, "recent_days", path), f"{path}.recent_days", low=1, high=3650)
        if recent >= long_days:
            raise RuleError(f"{path}.recent_days", "must be shorter than long_days.")
    elif kind == "restarted":
        _event_filter(cond, path, ctx)
        old = _int(_need(cond, "old_days", path), f"{path}.old_days", low=3, high=3650)
        gap = _int(_need(cond, "gap_days", path), f"{path}.gap_days", low=2, high=3650)
        recent = _int(_need(cond, "recent_days", path), f"{path}.recent_days", low=1, high=3650)
        if gap >= old:
            raise RuleError(f"{path}.gap_days", "must be shorter than old_days.")
        if recent >= gap:
            raise RuleError(f"{path}.recent_days", "must be shorter than gap_days.")
    elif kind == "sequence":
        _event_filter(cond, path, ctx)
        _event_filter(cond, path, ctx, prefix="then_")
        _int(_need(cond, "within_hours", path), f"{path}.within_hours", low=1, high=24 * 365)
        _window(cond, path, required=False)
    elif kind == "engagement":
        metric = _choice(cond.get("metric"), ENGAGEMENT_METRICS, f"{path}.metric")
        _choice(cond.get("op"), COMPARE_OPS, f"{path}.op")
        value = _number(cond.get("value"), f"{path}.value")
        if metric == "completion_rate" and not 0 <= value <= 1:
            raise RuleError(f"{path}.value", "must be between 0 and 1.")
        if metric == "active_days_per_week" and not 0 <= value <= 7:
            raise RuleError(f"{path}.value", "must be between 0 and 7.")
        if metric == "watch_time" and value < 0:
            raise RuleError(f"{path}.value", "must be 0 or more (minutes).")
        if metric == "watch_time" and cond.get("property") is not None:
            prop = cond["property"]
            if not isinstance(prop, str) or not PROPERTY_NAME.match(prop):
                raise RuleError(f"{path}.property", "must be a property name (letters, digits, _).")
        _int(_need(cond, "last_days", path), f"{path}.last_days", low=1, high=3650)
    elif kind == "rfm":
        if cond.get("group"):
            _choice(cond["group"], tuple(RFM_GROUPS), f"{path}.group")
        else:
            _choice(cond.get("score"), RFM_SCORES, f"{path}.score")
            low, high = cond.get("min", 1), cond.get("max", 5)
            if _int(low, f"{path}.min", low=1, high=5) > _int(high, f"{path}.max", low=1, high=5):
                raise RuleError(f"{path}.min", "must not exceed max.")
    elif kind == "frustration":
        signal = _choice(cond.get("signal"), ("abandon", "cart_abandon"), f"{path}.signal")
        _int(cond.get("count", 1), f"{path}.count", low=1)
        _int(_need(cond, "last_days", path), f"{path}.last_days", low=1, high=3650)
        if signal == "cart_abandon":
            _int(cond.get("within_hours", 24), f"{path}.within_hours", low=1, high=24 * 90)
    elif kind == "member_of":
        segment_id = _int(_need(cond, "segment", path), f"{path}.segment", low=1, high=2**62)
        if segment_id == ctx.segment_id:
            raise RuleError(f"{path}.segment", "a segment cannot contain itself.")
        if not Segment.objects.filter(pk=segment_id).exists():
            raise RuleError(f"{path}.segment", f"unknown segment {segment_id}.")
    elif kind == "experiment_variant":
        _experiment_variant(cond, path)
    elif kind == "declared_preference":
        _tag(_need(cond, "tag", path), f"{path}.tag", ctx)
        _choice(cond.get("sentiment", "like"), ("like", "dislike"), f"{path}.sentiment")


def _experiment_variant(cond: dict, path: str) -> None:
    """``experiment`` (key) must exist; ``variant`` (key), when given, must be one of its variants."""
    from experiments.models import Experiment, Variant

    key = _need(cond, "experiment", path)
    if not isinstance(key, str) or not Experiment.objects.filter(key=key).exists():
        raise RuleError(f"{path}.experiment", f"unknown experiment {key!r}.")
    variant = cond.get("variant")
    if variant is not None and (
        not isinstance(variant, str) or not Variant.objects.filter(experiment__key=key, key=variant).exists()
    ):
        raise RuleError(f"{path}.variant", f"unknown variant {variant!r} of experiment {key!r}.")
    if not isinstance(cond.get("exposed", False), bool):
        raise RuleError(f"{path}.exposed", "must be true or false.")


def _validate_group(group: Any, path: str, depth: int, ctx: CompileContext, counter: list[int]) -> None:
    if not isinstance(group, dict):
        raise RuleError(path, "must be an object.")
    _choice(group.get("op", "and"), ("and", "or"), f"{path}.op" if path else "op")
    if not isinstance(group.get("not", False), bool):
        raise RuleError(f"{path}.not", "must be true or false.")
    conditions = group.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise RuleError(f"{path}.conditions", "must be a non-empty list.")
    for n, cond in enumerate(conditions):
        cpath = f"{path}.conditions[{n}]"
        counter[0] += 1
        if counter[0] > MAX_CONDITIONS:
            raise RuleError(cpath, f"a rule has at most {MAX_CONDITIONS} conditions.")
        if isinstance(cond, dict) and "conditions" in cond:
            if depth >= MAX_DEPTH:
                raise RuleError(cpath, f"groups nest at most {MAX_DEPTH} deep.")
            _validate_group(cond, cpath, depth + 1, ctx, counter)
        elif isinstance(cond, dict):
            _validate_condition(cond, cpath, ctx)
        else:
            raise RuleError(cpath, "must be an object.")


def rule_validate(rule: Any, *, segment_id: int | None = None, ctx: CompileContext | None = None) -> dict:
    """Check ``rule`` against schema v1; raise ``RuleError`` naming the wrong part."""
    ctx = ctx or CompileContext(now=timezone.now(), segment_id=segment_id)
    if not isinstance(rule, dict):
        raise RuleError("rule", "must be an object.")
    if rule.get("version") != SCHEMA_VERSION:
        raise RuleError("version", f"must be {SCHEMA_VERSION}.")
    _validate_group(rule.get("root"), "root", 1, ctx, [0])
    return rule


# --- Compilation -------------------------------------------------------------------------------


def _ids(queryset: QuerySet, column: str = "profile_id") -> Q:
    return Q(pk__in=queryset.values(column))


def _none_of(events: QuerySet) -> Q:
    """Profiles without any of ``events``, as NOT EXISTS: PostgreSQL plans it as an anti-join,
    where ``NOT pk IN (...)`` over a large window falls back to re-scanning the subquery for
    each profile once it no longer fits in work_mem (minutes at 100k profiles, 5M events)."""
    return ~Q(Exists(events.filter(profile_id=OuterRef("pk"))))


def _window_bounds(cond: dict, now: datetime) -> tuple[datetime | None, datetime | None]:
    """[start, end) of a condition's window; (None, None) without one. ``to`` is inclusive: the
    window ends at the midnight (UTC) after it."""
    if "last_days" in cond:
        return now - timedelta(days=cond["last_days"]), None
    if "from" in cond:
        start = datetime.combine(date.fromisoformat(str(cond["from"])), datetime.min.time(), tzinfo=UTC)
        end = datetime.combine(date.fromisoformat(str(cond["to"])), datetime.min.time(), tzinfo=UTC)
        return start, end + timedelta(days=1)
    return None, None


def _in_window(events: QuerySet, cond: dict, now: datetime) -> QuerySet:
    start, end = _window_bounds(cond, now)
    if start is not None:
        events = events.filter(timestamp__gte=start)
    if end is not None:
        events = events.filter(timestamp__lt=end)
    return events


def _tag_items(slug_path: str, ctx: CompileContext) -> QuerySet:
    """Items tagged with the tag or any tag below it."""
    return ItemTag.objects.filter(tag__path__startswith=ctx.tags[slug_path]).values("item_id")


def _matching_events(cond: dict, ctx: CompileContext, prefix: str = "") -> QuerySet:
    events = Event.objects.all()
    if cond.get(f"{prefix}event"):
        events = events.filter(type=cond[f"{prefix}event"])
    else:
        events = events.filter(name=cond[f"{prefix}name"])
    if prefix:
        return events
    for prop in cond.get("properties", []):
        events = events.filter(_json_q("properties", prop["property"], prop["op"], prop.get("value")))
    if cond.get("item_tag"):
        events = events.filter(item_id__in=_tag_items(_tag(cond["item_tag"], "item_tag", ctx), ctx))
    return events


def _json_q(column: str, name: str, op: str, value: Any) -> Q:
    """One comparison on a key of a JSON column (``traits`` or ``properties``)."""
    key = f"{column}__{name}"
    has_key = Q(**{f"{column}__has_key": name})
    if op == "eq":
        q = Q(**{key: value})
    elif op == "neq":
        q = has_key & ~Q(**{key: value})
    elif op == "contains":
        q = Q(**{f"{key}__icontains": value})
    elif op == "starts_with":
        q = Q(**{f"{key}__istartswith": value})
    elif op in ("gt", "lt"):
        q = Q(**{f"{key}__{op}": value})
    elif op == "between":
        q = Q(**{f"{key}__gte": value[0], f"{key}__lte": value[1]})
    elif op == "in":
        q = Q(**{f"{key}__in": value})
    elif op == "before":
        q = Q(**{f"{key}__lt": str(value)})
    elif op == "after":
        q = Q(**{f"{key}__gt": str(value)})
    else:
        q = has_key & ~Q(**{f"{key}__isnull": True})
    return q


def _trait_q(cond: dict) -> Q:
    return _ids(Profile.objects.filter(_json_q("traits", cond["field"], cond["op"], cond.get("value"))), "pk")


def _performed_q(cond: dict, ctx: CompileContext) -> Q:
    events = _in_window(_matching_events(cond, ctx), cond, ctx.now)
    count_op, n = cond.get("count_op", "at_least"), cond.get("count", 1)
    counted = events.values("profile_id").annotate(n=Count("id"))
    if count_op == "at_least":
        return _ids(events) if n <= 1 else _ids(counted.filter(n__gte=n))
    if count_op == "at_most":  # zero times included
        return ~_ids(counted.filter(n__gt=n))
    if n == 0:
        return ~_ids(events)
    return _ids(counted.filter(n=n))


def _sequence_q(cond: dict, ctx: CompileContext) -> Q:
    then = _matching_events(cond, ctx, prefix="then_").filter(
        profile_id=OuterRef("profile_id"),
        timestamp__gt=OuterRef("timestamp"),
        timestamp__lte=OuterRef("timestamp") + timedelta(hours=cond["within_hours"]),
    )
    first = _in_window(_matching_events(cond, ctx), cond, ctx.now)
    return _ids(first.filter(Exists(then)))


def _engagement_q(cond: dict, ctx: CompileContext) -> Q:
    since = ctx.now - timedelta(days=cond["last_days"])
    events = Event.objects.filter(timestamp__gte=since)
    lookup, threshold = f"value__{cond['op']}", cond["value"]
    if cond["metric"] == "completion_rate":
        rows = (
            events.filter(type__in=[Event.Type.PLAY, Event.Type.COMPLETE])
            .values("profile_id")
            .annotate(
                plays=Count("id", filter=Q(type=Event.Type.PLAY)),
                completes=Count("id", filter=Q(type=Event.Type.COMPLETE)),
            )
            .filter(plays__gt=0)
            .annotate(value=Cast("completes", FloatField()) / Cast("plays", FloatField()))
        )
    elif cond["metric"] == "watch_time":
        # Only numeric values count: the range filter keeps JSON numbers on both databases
        # (PostgreSQL orders jsonb strings below numbers and booleans above them; SQLite orders
        # text above any number), so the cast in the sum never meets text.
        prop = cond.get("property") or WATCH_PROPERTY
        key = f"properties__{prop}"
        rows = (
            events.filter(type__in=WATCH_EVENT_TYPES, **{f"{key}__gte": 0, f"{key}__lte": WATCH_SECONDS_MAX})
            .values("profile_id")
            .annotate(value=Sum(Cast(KT(key), FloatField())))
        )
        threshold = cond["value"] * 60  # minutes in the rule, seconds in the events
    else:
        # The UTC date as text: both databases hand timestamps over in UTC, and a text prefix
        # avoids SQLite's per-row Python date function.
        rows = (
            events.annotate(day=Substr(Cast("timestamp", CharField()), 1, 10))
            .values("profile_id")
            .annotate(value=Count("day", distinct=True))
        )
        if cond["metric"] == "active_days_per_week":
            threshold = cond["value"] * cond["last_days"] / 7
    return _ids(rows.filter(**{lookup: threshold}))


def quintile_scores(values: dict[int, float], *, higher_is_better: bool = True) -> dict[int, int]:
    """Score 1-5 by quintile of the mid-rank (ties share a score): 1 + floor(5 x midrank / n)."""
    ordered = sorted(values.values())
    n = len(ordered)
    scores = {}
    for key, value in values.items():
        below, upto = bisect.bisect_left(ordered, value), bisect.bisect_right(ordered, value)
        worse = below if higher_is_better else n - upto
        midrank = worse + (upto - below) / 2
        scores[key] = min(5, 1 + int(5 * midrank / n))
    return scores


def rfm_scores(*, now: datetime, days: int = 365) -> dict[int, tuple[int, int, int]]:
    """(recency, frequency, monetary) scores of every profile active in the last ``days``.

    Recency: time since the last event; frequency: events in the window; monetary: the sum of
    ``value`` over purchases. Computed in Python over one aggregated row per profile, so both
    databases give the same scores.
    """
    rows = (
        Event.objects.filter(timestamp__gte=now - timedelta(days=days))
        .values("profile_id")
        .annotate(
            last=Max("timestamp"), n=Count("id"), money=Sum("value", filter=Q(type=Event.Type.PURCHASE))
        )
    )
    last, freq, money = {}, {}, {}
    for row in rows:
        pid = row["profile_id"]
        last[pid] = row["last"].timestamp()
        freq[pid] = float(row["n"])
        money[pid] = float(row["money"] or 0.0)
    r, f, m = quintile_scores(last), quintile_scores(freq), quintile_scores(money)
    return {pid: (r[pid], f[pid], m[pid]) for pid in last}


def rfm_group(recency: int, frequency: int) -> str:
    for name, ((r_low, r_high), (f_low, f_high)) in RFM_GROUPS.items():
        if r_low <= recency <= r_high and f_low <= frequency <= f_high:
            return name
    return "others"


def _rfm_q(cond: dict, ctx: CompileContext) -> Q:
    scores = rfm_scores(now=ctx.now)
    if cond.get("group"):
        ids = [pid for pid, (r, f, _m) in scores.items() if rfm_group(r, f) == cond["group"]]
    else:
        index = RFM_SCORES.index(cond["score"])
        low, high = cond.get("min", 1), cond.get("max", 5)
        ids = [pid for pid, s in scores.items() if low <= s[index] <= high]
    return Q(pk__in=ids)


def _frustration_q(cond: dict, ctx: CompileContext) -> Q:
    since = ctx.now - timedelta(days=cond["last_days"])
    n = cond.get("count", 1)
    if cond["signal"] == "abandon":
        events = Event.objects.filter(type=Event.Type.ABANDON, timestamp__gte=since)
    else:
        hours = timedelta(hours=cond.get("within_hours", 24))
        purchase = Event.objects.filter(
            type=Event.Type.PURCHASE,
            profile_id=OuterRef("profile_id"),
            timestamp__gte=OuterRef("timestamp"),
            timestamp__lte=OuterRef("timestamp") + hours,
        )
        # Only carts old enough for the purchase window to have closed.
        events = Event.objects.filter(
            type=Event.Type.ADD_TO_CART, timestamp__gte=since, timestamp__lte=ctx.now - hours
        ).filter(~Exists(purchase))
    if n <= 1:
        return _ids(events)
    return _ids(events.values("profile_id").annotate(n=Count("id")).filter(n__gte=n))


def _condition_q(cond: dict, ctx: CompileContext) -> Q:
    kind = cond["kind"]
    if kind == "trait":
        return _trait_q(cond)
    if kind == "performed":
        return _performed_q(cond, ctx)
    if kind == "not_performed":
        return _none_of(_in_window(_matching_events(cond, ctx), cond, ctx.now))
    if kind == "first_time_within":
        # In the window (the last D days, or between two dates) and never before it.
        events = _matching_events(cond, ctx)
        start, _end = _window_bounds(cond, ctx.now)
        return _ids(_in_window(events, cond, ctx.now)) & _none_of(events.filter(timestamp__lt=start))
    if kind == "stopped":
        events = _matching_events(cond, ctx)
        recent = ctx.now - timedelta(days=cond["recent_days"])
        long_start = ctx.now - timedelta(days=cond["long_days"])
        earlier = events.filter(timestamp__gte=long_start, timestamp__lt=recent)
        return _ids(earlier) & _none_of(events.filter(timestamp__gte=recent))
    if kind == "restarted":
        events = _matching_events(cond, ctx)
        recent_start = ctx.now - timedelta(days=cond["recent_days"])
        gap_start = ctx.now - timedelta(days=cond["gap_days"])
        old_start = ctx.now - timedelta(days=cond["old_days"])
        old = events.filter(timestamp__gte=old_start, timestamp__lt=gap_start)
        gap = events.filter(timestamp__gte=gap_start, timestamp__lt=recent_start)
        return _ids(old) & _none_of(gap) & _ids(events.filter(timestamp__gte=recent_start))
    if kind == "sequence":
        return _sequence_q(cond, ctx)
    if kind == "engagement":
        return _engagement_q(cond, ctx)
    if kind == "rfm":
        return _rfm_q(cond, ctx)
    if kind == "frustration":
        return _frustration_q(cond, ctx)
    if kind == "member_of":
        members = SegmentMembership.objects.filter(segment_id=cond["segment"], exited_at__isnull=True)
        return _ids(members)
    if kind == "experiment_variant":
        from experiments.models import Assignment

        # The current phase only: a new phase re-randomises, so older assignments are history.
        assigned = Assignment.objects.filter(experiment__key=cond["experiment"], phase=F("experiment__phase"))
        if cond.get("variant"):
            assigned = assigned.filter(variant__key=cond["variant"])
        if cond.get("exposed"):
            assigned = assigned.filter(first_exposed_at__isnull=False)
        return _ids(assigned)
    # declared_preference
    sentiment = 1 if cond.get("sentiment", "like") == "like" else -1
    tree_path = ctx.tags[_tag(cond["tag"], "tag", ctx)]
    prefs = DeclaredPreference.objects.filter(tag__path__startswith=tree_path, sentiment=sentiment)
    return _ids(prefs)


def _group_q(group: dict, ctx: CompileContext) -> Q:
    parts = [_group_q(c, ctx) if "conditions" in c else _condition_q(c, ctx) for c in group["conditions"]]
    q = parts[0]
    for part in parts[1:]:
        q = (q | part) if group.get("op", "and") == "or" else (q & part)
    return ~q if group.get("not") else q


def rule_queryset(rule: Any, *, now: datetime | None = None, segment_id: int | None = None) -> QuerySet:
    """Profiles matching ``rule`` (validated first)."""
    ctx = CompileContext(now=now or timezone.now(), segment_id=segment_id)
    rule_validate(rule, ctx=ctx)
    return Profile.objects.filter(_group_q(rule["root"], ctx))


def segment_estimate(*, rule: Any, now: datetime | None = None) -> int:
    """How many profiles match ``rule`` right now (one COUNT query, plus tag look-ups)."""
    return rule_queryset(rule, now=now).count()


# --- Refresh -----------------------------------------------------------------------------------

CHUNK = 2000


def _membership_apply(*, segment: Segment, target: set[int], now: datetime) -> tuple[int, int]:
    """Open stays for profiles that entered, close stays of those that left. Returns (entered, exited)."""
    current = set(
        SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values_list(
            "profile_id", flat=True
        )
    )
    entered = sorted(target - current)
    exited = sorted(current - target)
    SegmentMembership.objects.bulk_create(
        [SegmentMembership(segment=segment, profile_id=pid, entered_at=now) for pid in entered],
        batch_size=CHUNK,
    )
    for start in range(0, len(exited), CHUNK):
        SegmentMembership.objects.filter(
            segment=segment, profile_id__in=exited[start : start + CHUNK], exited_at__isnull=True
        ).update(exited_at=now)
    return len(entered), len(exited)


def _refresh_run(*, segment: Segment, trigger: str, now: datetime | None, compute) -> SegmentRefresh:
    started = time.perf_counter()
    now = now or timezone.now()
    try:
        with transaction.atomic():
            refresh = SegmentRefresh.objects.create(segment=segment, trigger=trigger, started_at=now)
    except IntegrityError:
        raise SegmentBusy(f"A refresh of {segment} is already running.") from None
    try:
        target = compute()
        with transaction.atomic():
            entered, exited = _membership_apply(segment=segment, target=target, now=now)
            Segment.objects.filter(pk=segment.pk).update(size=len(target), last_refreshed_at=now)
            SegmentRefresh.objects.filter(pk=refresh.pk, status=SegmentRefresh.Status.RUNNING).update(
                status=SegmentRefresh.Status.SUCCEEDED,
                finished_at=timezone.now(),
                duration_seconds=time.perf_counter() - started,
                size=len(target),
                entered=entered,
                exited=exited,
            )
    except Exception as exc:
        SegmentRefresh.objects.filter(pk=refresh.pk, status=SegmentRefresh.Status.RUNNING).update(
            status=SegmentRefresh.Status.FAILED,
            finished_at=timezone.now(),
            duration_seconds=time.perf_counter() - started,
            error=str(exc)[:2000],
        )
        raise
    segment.size, segment.last_refreshed_at = len(target), now
    refresh.refresh_from_db()
    from .webhooks import webhooks_enqueue

    webhooks_enqueue(refresh=refresh)
    return refresh


def segment_refresh(
    *, segment: Segment, trigger: str = "manual", now: datetime | None = None
) -> SegmentRefresh:
    """Recompute a dynamic segment's members and record entries, exits, size and duration.

    Raises ``SegmentBusy`` when another refresh of the segment is running (the partial unique
    constraint decides), ``RuleError`` when the stored rule no longer validates.
    """
    if segment.kind != Segment.Kind.DYNAMIC:
        raise RuleError("kind", f"only dynamic segments are refreshed; this one is {segment.kind}.")

    def compute() -> set[int]:
        return set(rule_queryset(segment.rule, now=now, segment_id=segment.pk).values_list("pk", flat=True))

    return _refresh_run(segment=segment, trigger=trigger, now=now, compute=compute)


def segments_refresh_due(*, now: datetime | None = None, stale_after_seconds: int = 3600) -> list[int]:
    """Ids of dynamic segments whose schedule is due; also fails refreshes stuck for too long."""
    now = now or timezone.now()
    SegmentRefresh.objects.filter(
        status=SegmentRefresh.Status.RUNNING, started_at__lt=now - timedelta(seconds=stale_after_seconds)
    ).update(status=SegmentRefresh.Status.FAILED, finished_at=now, error="Stale: no result in time.")
    due = []
    segments = Segment.objects.filter(kind=Segment.Kind.DYNAMIC, refresh_every_minutes__isnull=False)
    for segment in segments.only("pk", "refresh_every_minutes", "last_refreshed_at"):
        if segment.last_refreshed_at is None or segment.last_refreshed_at <= now - timedelta(
            minutes=segment.refresh_every_minutes
        ):
            due.append(segment.pk)
    return due


@dataclass
class UploadReport:
    refresh: SegmentRefresh
    matched: int
    unknown: list[str]


def segment_upload(
    *, segment: Segment, file: io.TextIOBase | str, now: datetime | None = None
) -> UploadReport:
    """Set a static segment's members from a CSV of user ids (first column; a header
    ``user_id`` is skipped). Unknown ids are reported, not created."""
    if segment.kind != Segment.Kind.STATIC:
        raise RuleError("kind", "only static segments take an upload.")
    text = file if isinstance(file, str) else file.read()
    ids = []
    for n, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or not row[0].strip():
            continue
        if n == 0 and row[0].strip().lower() in ("user_id", "userid", "external_id", "id"):
            continue
        ids.append(row[0].strip())
    wanted = set(ids)
    found: dict[str, int] = {}
    id_list = sorted(wanted)
    for start in range(0, len(id_list), CHUNK):
        found.update(
            Profile.objects.filter(external_id__in=id_list[start : start + CHUNK]).values_list(
                "external_id", "pk"
            )
        )
    unknown = sorted(wanted - set(found))
    refresh = _refresh_run(segment=segment, trigger="upload", now=now, compute=lambda: set(found.values()))
    return UploadReport(refresh=refresh, matched=len(found), unknown=unknown)


# --- Reads used elsewhere ----------------------------------------------------------------------


def segment_resolver(profile_id: int, segment_ids: list[int]) -> bool:
    """Experiment targeting (``EXPERIMENTS_SEGMENT_RESOLVER``): is the profile in any of the segments?"""
    ids = [int(s) for s in segment_ids if str(s).isdigit()]
    return SegmentMembership.objects.filter(
        profile_id=profile_id, segment_id__in=ids, exited_at__isnull=True
    ).exists()


def profile_segments(*, profile: Profile) -> QuerySet:
    """Segments a profile is in now."""
    return Segment.objects.filter(memberships__profile=profile, memberships__exited_at__isnull=True).order_by(
        "name"
    )


def segment_usage(*, segment: Segment) -> list[tuple[str, str]]:
    """Where a segment is used: (kind, name) of experiments and placements that target it."""
    from .models import Placement

    used = [
        ("placement", p.name) for p in Placement.objects.all() if segment.key in (p.segment_overrides or {})
    ]
    try:
        from experiments.models import Experiment
    except ImportError:  # pragma: no cover
        return used
    for experiment in Experiment.objects.all().only("pk", "name", "segment_ids"):
        if segment.pk in [int(s) for s in experiment.segment_ids or [] if str(s).isdigit()]:
            used.append(("experiment", experiment.name))
    for other in (
        Segment.objects.filter(kind=Segment.Kind.DYNAMIC).exclude(pk=segment.pk).only("name", "rule")
    ):
        if segment.pk in _member_of_ids((other.rule or {}).get("root")):
            used.append(("segment", other.name))
    return used


def _member_of_ids(node: Any) -> set[int]:
    """Segment ids named by ``member_of`` conditions anywhere in a rule group."""
    if not isinstance(node, dict):
        return set()
    if node.get("kind") == "member_of":
        return {node["segment"]} if isinstance(node.get("segment"), int) else set()
    found: set[int] = set()
    for child in node.get("conditions") or []:
        found |= _member_of_ids(child)
    return found


POPULATION_SHARES_SECONDS = 600


def segment_tag_affinity(*, segment: Segment, limit: int = 12) -> list[tuple[str, float, float]]:
    """(tag, share among members, share among everyone) for the tags the segment over-indexes on.

    A share is the tag's part of all interaction strength on tags below the facets, so members
    and the population are compared on the same scale whatever their sizes. Two grouped queries."""
    from .models import Interaction

    base = Interaction.objects.filter(strength__gt=0, item__item_tags__tag__depth__gte=2)
    members = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True).values("profile_id")

    def shares(queryset: QuerySet) -> dict[str, float]:
        rows = dict(
            queryset.values_list("item__item_tags__tag__name").annotate(total=Sum("strength")).order_by()
        )
        total = sum(rows.values()) or 1.0
        return {name: value / total for name, value in rows.items()}

    mine = shares(base.filter(profile_id__in=members))
    if not mine:
        return []
    # The population's shares are the same for every segment and move slowly: computed once
    # per POPULATION_SHARES_SECONDS (about a second on the demo data) instead of per page view.
    everyone = cache.get_or_set(
        "segments:tag-shares:everyone", lambda: shares(base), POPULATION_SHARES_SECONDS
    )
    ranked = sorted(mine, key=lambda name: (-(mine[name] - everyone.get(name, 0.0)), name))[:limit]
    return [(name, mine[name], everyone.get(name, 0.0)) for name in ranked]


def segment_overlap(*, segment: Segment, limit: int = 15) -> list[tuple[str, int, int, float]]:
    """(segment name, shared members, its size, Jaccard index) for the segments sharing members."""
    members = SegmentMembership.objects.filter(segment=segment, exited_at__isnull=True)
    mine = members.count()
    shared = (
        SegmentMembership.objects.filter(exited_at__isnull=True, profile_id__in=members.values("profile_id"))
        .exclude(segment=segment)
        .values("segment_id")
        .annotate(n=Count("id"))
        .order_by("-n", "segment_id")[:limit]
    )
    counts = {row["segment_id"]: row["n"] for row in shared}
    sizes = dict(
        SegmentMembership.objects.filter(segment_id__in=counts, exited_at__isnull=True)
        .values_list("segment_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    names = dict(Segment.objects.filter(pk__in=counts).values_list("pk", "name"))
    return [
        (names[pk], n, sizes.get(pk, 0), n / max(1, mine + sizes.get(pk, 0) - n)) for pk, n in counts.items()
    ]


def segment_history(*, segment: Segment, limit: int = 200) -> list[SegmentRefresh]:
    """Successful refreshes, oldest first (size history)."""
    rows = segment.refreshes.filter(status=SegmentRefresh.Status.SUCCEEDED).order_by("-started_at")[:limit]
    return list(reversed(rows))


def sparkline_points(sizes: list[int], *, width: int = 120, height: int = 24) -> str:
    """SVG polyline points for a small size-history sparkline."""
    if not sizes:
        return ""
    if len(sizes) == 1:
        sizes = sizes * 2
    top = max(sizes) or 1
    step = width / (len(sizes) - 1)
    return " ".join(f"{n * step:.1f},{height - 2 - (height - 4) * s / top:.1f}" for n, s in enumerate(sizes))


# --- Discovered segments -------------------------------------------------------------------------


@dataclass
class Cluster:
    index: int
    profile_ids: list[int]
    description: str
    top_tags: list[tuple[str, float]]  # (tag name, lift over the population mean)
    activity: float  # mean events in the last 30 days
    recency_days: float  # mean days since last seen


@dataclass
class Discovery:
    k: int
    silhouette: float | None
    clusters: list[Cluster]
    scores: dict[int, float] = field(default_factory=dict)  # k -> silhouette


def cluster_profiles(
    features: Any,
    *,
    k: int | None = None,
    max_k: int = 8,
    seed: int = 7,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Any, int, dict[int, float]]:
    """MiniBatchKMeans labels of the rows of ``features``; k chosen by silhouette when not given.

    Pure: numpy in, (labels, k, {k: silhouette}) out.
    """
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import silhouette_score

    n = features.shape[0]
    candidates = [k] if k else list(range(2, max(2, min(max_k, n - 1)) + 1))
    best: tuple[float, int, Any] | None = None
    scores = {}
    for done, candidate in enumerate(candidates):
        if progress is not None:
            progress(done, len(candidates))
        model = MiniBatchKMeans(n_clusters=candidate, random_state=seed, n_init=3, batch_size=1024)
        labels = model.fit_predict(features)
        if len(set(labels)) < 2:
            score = -1.0
        else:
            sample = min(n, 3000)
            score = float(silhouette_score(features, labels, sample_size=sample, random_state=seed))
        scores[candidate] = score
        if best is None or score > best[0]:
            best = (score, candidate, labels)
    assert best is not None
    return np.asarray(best[2]), best[1], scores


def _describe(top_tags: list[str], activity: float, population_activity: float, recency: float) -> str:
    if top_tags:
        names = top_tags[0] if len(top_tags) == 1 else f"{', '.join(top_tags[:-1])} and {top_tags[-1]}"
        text = f"{names} fans"
    else:
        text = "Broad tastes"
    if activity >= 1.5 * population_activity:
        text += ", heavy users"
    elif activity <= 0.5 * population_activity:
        text += ", light users"
    text += ", lapsed" if recency > 30 else ", recently active" if recency < 7 else ""
    return text


def segment_discover(
    *,
    k: int | None = None,
    max_k: int = 8,
    now: datetime | None = None,
    seed: int = 7,
    progress: Callable[[int, str], None] | None = None,
) -> Discovery:
    """Cluster profiles on behaviour: tag affinities (interaction strength per tag, rows L2-normalised),
    activity (log events in the last 30 days) and recency (days since last seen), standardised.
    Each cluster is described by its most distinctive tags (largest lift over the population)."""
    import numpy as np

    from .models import Interaction

    now = now or timezone.now()
    report = progress or (lambda percent, message: None)
    report(5, "Reading tag affinities")
    rows = (
        Interaction.objects.filter(strength__gt=0, item__item_tags__tag__depth__gte=2)
        .values_list("profile_id", "item__item_tags__tag_id")
        .annotate(total=Sum("strength"))
    )
    affinity: dict[int, dict[int, float]] = {}
    for profile_id, tag_id, total in rows:
        affinity.setdefault(profile_id, {})[tag_id] = total
    profile_ids = sorted(affinity)
    if len(profile_ids) < 3:
        return Discovery(k=0, silhouette=None, clusters=[])
    tag_ids = sorted({t for tags in affinity.values() for t in tags})
    column = {t: n for n, t in enumerate(tag_ids)}
    tags = np.zeros((len(profile_ids), len(tag_ids)))
    for row, pid in enumerate(profile_ids):
        for tag_id, total in affinity[pid].items():
            tags[row, column[tag_id]] = total
    tags /= np.maximum(np.linalg.norm(tags, axis=1, keepdims=True), 1e-9)
    counts = dict(
        Event.objects.filter(timestamp__gte=now - timedelta(days=30), profile_id__in=profile_ids)
        .values_list("profile_id")
        .annotate(n=Count("id"))
    )
    seen = dict(Profile.objects.filter(pk__in=profile_ids).values_list("pk", "last_seen"))
    activity = np.array([counts.get(pid, 0) for pid in profile_ids], dtype=float)
    recency = np.array(
        [((now - seen[pid]).total_seconds() / 86400) if seen.get(pid) else 365.0 for pid in profile_ids]
    )
    extra = np.column_stack([np.log1p(activity), np.log1p(np.maximum(recency, 0))])
    extra = (extra - extra.mean(axis=0)) / np.maximum(extra.std(axis=0), 1e-9)
    features = np.hstack([tags, 0.5 * extra])
    report(30, f"Clustering {len(profile_ids)} profiles")
    labels, best_k, scores = cluster_profiles(
        features,
        k=k,
        max_k=max_k,
        seed=seed,
        progress=lambda done, total: report(30 + 60 * done // total, f"Trying k = {k or done + 2}"),
    )
    report(92, "Describing clusters")
    names = dict(Tag.objects.filter(pk__in=tag_ids).values_list("pk", "name"))
    population = tags.mean(axis=0)
    clusters = []
    for index in range(best_k):
        mask = labels == index
        if not mask.any():
            continue
        lift = tags[mask].mean(axis=0) - population
        order = [int(i) for i in np.argsort(-lift)[:3] if lift[i] > 0]
        top = [(names[tag_ids[i]], float(lift[i])) for i in order]
        mean_activity, mean_recency = float(activity[mask].mean()), float(recency[mask].mean())
        clusters.append(
            Cluster(
                index=index,
                profile_ids=[pid for pid, m in zip(profile_ids, mask, strict=True) if m],
                description=_describe(
                    [t for t, _ in top[:2]], mean_activity, float(activity.mean()), mean_recency
                ),
                top_tags=top,
                activity=mean_activity,
                recency_days=mean_recency,
            )
        )
    clusters.sort(key=lambda c: -len(c.profile_ids))
    return Discovery(k=best_k, silhouette=scores[best_k], clusters=clusters, scores=scores)


def segment_save_cluster(*, cluster: Cluster, key: str, name: str, created_by=None) -> Segment:
    """Save a discovered cluster as a segment (kind ``discovered``, members as of now)."""
    segment = Segment.objects.create(
        key=key,
        name=name,
        description=cluster.description,
        kind=Segment.Kind.DISCOVERED,
        refresh_every_minutes=None,
        created_by=created_by,
    )
    ids = set(cluster.profile_ids)
    _refresh_run(segment=segment, trigger="discover", now=None, compute=lambda: ids)
    return segment


# --- Discovery jobs (heavy queue) ----------------------------------------------------------------


def discovery_job_create(*, k: int | None, max_k: int = 8, created_by=None) -> DiscoveryJob:
    """Queue a clustering of the audience on the heavy queue (after commit)."""
    from . import tasks

    job = DiscoveryJob.objects.create(
        k=k,
        max_k=max_k,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )
    outbox.enqueue(tasks.segment_discovery_execute, job.pk)
    return job


def discovery_job_execute(*, job_id: int, now: datetime | None = None) -> DiscoveryJob:
    """Run a queued discovery, reporting progress on its row; the clusters go into ``result``.

    Only a queued job starts (a conditional update), so a redelivered message does not run it twice."""
    started = timezone.now()
    if not DiscoveryJob.objects.filter(pk=job_id, status=DiscoveryJob.Status.QUEUED).update(
        status=DiscoveryJob.Status.RUNNING, started_at=started, progress=1, message="Starting"
    ):
        return DiscoveryJob.objects.get(pk=job_id)
    job = DiscoveryJob.objects.get(pk=job_id)

    def progress(percent: int, message: str) -> None:
        DiscoveryJob.objects.filter(pk=job_id, status=DiscoveryJob.Status.RUNNING).update(
            progress=percent, message=message[:200]
        )

    try:
        discovery = segment_discover(k=job.k, max_k=job.max_k, now=now, progress=progress)
    except Exception as exc:
        DiscoveryJob.objects.filter(pk=job_id, status=DiscoveryJob.Status.RUNNING).update(
            status=DiscoveryJob.Status.FAILED,
            finished_at=timezone.now(),
            error=str(exc)[:2000],
            message="Failed",
        )
        raise
    result = {
        "k": discovery.k,
        "silhouette": discovery.silhouette,
        "scores": {str(key): value for key, value in discovery.scores.items()},
        "clusters": [asdict(cluster) for cluster in discovery.clusters],
    }
    DiscoveryJob.objects.filter(pk=job_id, status=DiscoveryJob.Status.RUNNING).update(
        status=DiscoveryJob.Status.SUCCEEDED,
        finished_at=timezone.now(),
        progress=100,
        message=f"{len(discovery.clusters)} clusters in {(timezone.now() - started).total_seconds():.0f} s",
        result=result,
    )
    job.refresh_from_db()
    return job


def discovery_job_clusters(*, job: DiscoveryJob) -> list[Cluster]:
    """The clusters a finished job found (empty while it runs)."""
    return [
        Cluster(**{**c, "top_tags": [tuple(t) for t in c["top_tags"]]})
        for c in (job.result or {}).get("clusters", [])
    ]


def discovery_job_save_cluster(*, job: DiscoveryJob, index: int, name: str, created_by=None) -> Segment:
    """Save cluster ``index`` of a finished job as a discovered segment (its members as found).

    Raises ``RuleError`` naming the form field when the cluster or the name is wrong."""
    from django.utils.text import slugify

    cluster = next((c for c in discovery_job_clusters(job=job) if c.index == index), None)
    if cluster is None:
        raise RuleError("cluster", "that cluster is not in this discovery.")
    name = (name or "").strip()[:200] or cluster.description
    base = slugify(name)[:90] or "cluster"
    key, n = base, 1
    while Segment.objects.filter(key=key).exists():
        n += 1
        key = f"{base}-{n}"
    segment = segment_save_cluster(cluster=cluster, key=key, name=name, created_by=created_by)
    from recsite.services import audit_record

    audit_record(
        actor=created_by,
        action="segment.save_cluster",
        target=segment,
        detail={"job": job.pk, "cluster": index},
    )
    return segment
