from datetime import UTC, datetime, time
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.db import connection
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import requires_csrf_token
from markdown_it import MarkdownIt

from personalization import charts as event_charts
from personalization.models import Recommender, TrainingRun

from . import charts, impact, tables
from . import dashboard as dashboard_figures
from .forms import RANGE_PRESETS, DateRangeForm, TimeZoneForm
from .middleware import time_zone_set
from .models import AuditEntry, UserPreference


def _range_form(request) -> DateRangeForm:
    return DateRangeForm(request.GET or None, today=timezone.localdate())


def dashboard(request):
    """KPIs over the chosen range against the period before it, with their daily trend."""
    form = _range_form(request)
    day_from, day_to = form.range()
    data = dashboard_figures.dashboard_data(day_from=day_from, day_to=day_to)
    report = data.impact_report
    summary = report.summary()
    context = {
        "form": form,
        "presets": RANGE_PRESETS,
        "preset": form.preset,
        "data": data,
        "days": len(data.days),
        "events_chart": event_charts.events_per_day(data.events_by_type) if data.events_by_type else None,
        "active_chart": charts.daily_counts(
            days=data.days,
            series=[("active profiles", data.active_per_day, "#4f46e5")],
            y_title="profiles",
        )
        if any(data.active_per_day)
        else None,
        "impact_chart": _share_chart(report, by="placement")
        if summary["impressions"] or summary["clicks"]
        else None,
        "ctr_chart": _ctr_chart(report) if summary["impressions"] else None,
        "recent_runs": TrainingRun.objects.select_related("recommender")[:5],
    }
    return render(request, "dashboard.html", context)


def _algorithms() -> dict[str, str]:
    return dict(Recommender.objects.values_list("name", "algorithm"))


def _share_chart(report: impact.ImpactReport, *, by: str, algorithms: dict | None = None) -> dict:
    """Share of all engagement (every measured type together) attributed to each series, per day."""
    totals = [sum(day) for day in zip(*report.totals.values(), strict=True)] if report.totals else []
    series = []
    for s in report.series:
        attributed = [sum(day) for day in zip(*s.attributed.values(), strict=True)] if s.attributed else []
        if not any(attributed):
            continue
        shares = [a / t if t else None for a, t in zip(attributed, totals, strict=True)]
        series.append(
            (
                impact.series_label(s.key, by),
                shares,
                charts.series_colour(s.key, by=by, algorithms=algorithms),
            )
        )
    return charts.lines_over_time(days=report.days, series=series, y_title="share of engagement")


def _ctr_chart(report: impact.ImpactReport) -> dict:
    impressions = [sum(day) for day in zip(*(s.impressions for s in report.series), strict=True)]
    clicks = [sum(day) for day in zip(*(s.clicks for s in report.series), strict=True)]
    return charts.impressions_and_ctr(days=report.days, impressions=impressions, clicks=clicks)


@permission_required("personalization.view_recommender", raise_exception=True)
def impact_page(request):
    """Business impact: how much engagement follows a click on a recommendation, per placement
    and per recommender, over time (figures refreshed by a beat task, see docs/impact.md).

    The figures are stored per UTC day, so the range is in UTC days too ("last 7 days" ends with
    today in UTC, as in the API) and the page says where a UTC day starts in the user's time zone."""
    form = DateRangeForm(request.GET or None, today=timezone.now().astimezone(UTC).date())
    day_from, day_to = form.range()
    algorithms = _algorithms()
    by_placement = impact.impact_report(day_from=day_from, day_to=day_to, by="placement")
    by_recommender = impact.impact_report(day_from=day_from, day_to=day_to, by="recommender")
    summary = by_placement.summary()
    has_data = bool(by_placement.series)
    # Types nobody engaged with in the range would only add empty columns.
    types = [t for t in by_placement.types if summary["engagement"][t]["events"]] or by_placement.types
    rows = {}
    for by, report in (("placement", by_placement), ("recommender", by_recommender)):
        rows[by] = [
            {
                "label": impact.series_label(s.key, by),
                "colour": charts.series_colour(s.key, by=by, algorithms=algorithms),
                "impressions": sum(s.impressions),
                "clicks": sum(s.clicks),
                "ctr": sum(s.clicks) / sum(s.impressions) if sum(s.impressions) else None,
                "shares": [
                    sum(s.attributed[t]) / sum(report.totals[t]) if sum(report.totals[t]) else None
                    for t in types
                ],
            }
            for s in report.series
        ]
    ctr_series = [
        (impact.series_label(s.key, "placement"), s.ctr(), charts.placement_colour(s.key))
        for s in by_placement.series
        if any(s.impressions)
    ]
    context = {
        "form": form,
        "presets": RANGE_PRESETS,
        "preset": form.preset,
        "day_from": day_from,
        "day_to": day_to,
        # Midnight UTC, which the template shows in the user's time zone.
        "utc_day_start": datetime.combine(day_to, time.min, tzinfo=UTC),
        "user_time_zone": timezone.get_current_timezone_name(),
        "summary": summary,
        "types": types,
        "measured_types": by_placement.types,
        "engagement": [(t, summary["engagement"][t]) for t in types],
        "rows": rows,
        "has_data": has_data,
        "charts": {
            "placement": _share_chart(by_placement, by="placement") if has_data else None,
            "recommender": _share_chart(by_recommender, by="recommender", algorithms=algorithms)
            if has_data
            else None,
            "ctr": charts.lines_over_time(
                days=by_placement.days, series=ctr_series, y_title="click-through rate"
            )
            if ctr_series
            else None,
        },
        "window_hours": settings.IMPACT_ATTRIBUTION_WINDOW_HOURS,
        "last_refresh": impact.last_refresh(),
    }
    return render(request, "recsite/impact.html", context)


def account_settings(request):
    """The signed-in user's own settings: the time zone every page shows times in."""
    preference = UserPreference.objects.filter(user=request.user).first()
    if request.method == "POST":
        form = TimeZoneForm(request.POST)
        if form.is_valid():
            time_zone_set(request=request, time_zone=form.cleaned_data["time_zone"])
            messages.success(request, "Saved. Times are now shown in your time zone.")
            return redirect("account_settings")
    else:
        form = TimeZoneForm(initial={"time_zone": preference.time_zone if preference else ""})
    context = {"form": form, "site_time_zone": settings.TIME_ZONE, "now": timezone.now()}
    return render(request, "recsite/account_settings.html", context)


GUIDE = Path(settings.BASE_DIR) / "docs" / "guide.md"


# CommonMark plus tables. Raw HTML in the guide is escaped, not passed through ("html": False),
# and markdown-it refuses javascript:, vbscript:, file: and data: links, so the output is safe
# to mark as such; it has no inline scripts or styles, so the CSP holds.
GUIDE_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def guide_sections(text: str) -> list[dict]:
    """The guide split at its "## " headings, each with an anchor and its body rendered from
    Markdown to HTML (``html``)."""
    sections: list[dict] = []
    current = {"title": "", "anchor": "top", "body": []}
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append(current)
            title = line[3:].strip()
            current = {"title": title, "anchor": slugify(title), "body": []}
        elif line.startswith("# ") and not sections and not current["body"]:
            current["title"] = line[2:].strip()
        elif not line.startswith("!["):  # images are for the Markdown viewers of docs/
            current["body"].append(line)
    sections.append(current)
    out = []
    for section in sections:
        body = "\n".join(section["body"]).strip()
        if section["title"] or body:
            out.append({**section, "body": body, "html": mark_safe(GUIDE_MARKDOWN.render(body))})
    return out


def help_page(request):
    """The marketer's guide (docs/guide.md)."""
    try:
        text = GUIDE.read_text(encoding="utf-8")
    except OSError:
        text = ""
    return render(request, "recsite/help.html", {"sections": guide_sections(text)})


@login_not_required
@never_cache
def healthz(request):
    """Liveness and database readiness for load balancers and monitoring."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok"})


def permission_denied(request, exception=None):
    return render(request, "403.html", status=403)


def page_not_found(request, exception=None):
    return render(request, "404.html", status=404)


@requires_csrf_token
def server_error(request):
    return render(request, "500.html", status=500)


AUDIT_COLUMNS = [
    tables.Column("at", "When", ("at",), descending_first=True),
    tables.Column("who", "Who", ("actor_label", "at")),
    tables.Column("action", "Action", ("action", "at")),
    tables.Column("target", "Target", ("target_label", "at")),
    tables.Column("detail", "Detail"),
    tables.Column("ip", "IP", ("ip", "at")),
]


@permission_required("recsite.view_auditentry", raise_exception=True)
def audit_log(request):
    entries = AuditEntry.objects.all()
    action = request.GET.get("action", "")
    if action:
        entries = entries.filter(action=action)
    query = request.GET.get("q", "").strip()
    if query:
        entries = entries.filter(Q(actor_label__icontains=query) | Q(target_label__icontains=query))
    table = tables.table(request, entries, AUDIT_COLUMNS, default_sort="-at")
    actions = [
        (a, a) for a in AuditEntry.objects.order_by("action").values_list("action", flat=True).distinct()
    ]
    context = {"table": table, "page": table.page, "action": action, "actions": actions, "q": query}
    return render(request, "recsite/audit_log.html", context)


def jobs(request):
    """Every long job the user may see, with its progress, status and error; failed
    training runs can be retried from here."""
    from . import outbox, services

    context = {"jobs": services.jobs_recent(user=request.user), "backlog": outbox.outbox_backlog()}
    return render(request, "jobs.html", context)
