from datetime import timedelta

from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import requires_csrf_token

from catalog.models import Item
from experiments.models import Experiment
from personalization import charts
from personalization.models import Event, Profile, Recommender, TrainingRun

from .models import AuditEntry

DASHBOARD_RANGES = {"7": 7, "30": 30, "90": 90}


def dashboard(request):
    days = DASHBOARD_RANGES.get(request.GET.get("days", "30"), 30)
    since = timezone.now() - timedelta(days=days)
    rows = (
        Event.objects.filter(timestamp__gte=since)
        .annotate(day=TruncDate("timestamp"))
        .values_list("day", "type")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    rows = list(rows)
    context = {
        "days": days,
        "ranges": DASHBOARD_RANGES,
        "events_chart": charts.events_per_day(rows) if rows else None,
        "kpis": {
            "events": sum(n for _, _, n in rows),
            "active_profiles": Profile.objects.filter(last_seen__gte=since).count(),
            "items": Item.objects.filter(active=True).count(),
            "running_experiments": Experiment.objects.filter(status=Experiment.Status.RUNNING).count(),
        },
        "recommenders": Recommender.objects.select_related("active_run").order_by("name")[:6],
        "recent_runs": TrainingRun.objects.select_related("recommender")[:5],
    }
    return render(request, "dashboard.html", context)


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


@permission_required("recsite.view_auditentry", raise_exception=True)
def audit_log(request):
    entries = AuditEntry.objects.all()
    action = request.GET.get("action", "")
    if action:
        entries = entries.filter(action=action)
    page = Paginator(entries, 50).get_page(request.GET.get("page"))
    actions = AuditEntry.objects.order_by("action").values_list("action", flat=True).distinct()
    return render(request, "recsite/audit_log.html", {"page": page, "action": action, "actions": actions})


def jobs(request):
    """Every long job the user may see, with its progress, status and error; failed
    training runs can be retried from here."""
    from . import services

    return render(request, "jobs.html", {"jobs": services.jobs_recent(user=request.user)})
