import json
from datetime import datetime as _datetime

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from catalog.models import Tag
from experiments.models import Variant
from recsite import outbox, tables

from . import (
    charts,
    identity,
    profiles,
    segment_charts,
    segments,
    services,
    serving,
    tasks,
    tracking,
    webhooks,
)
from .forms import PlacementForm, RecommenderForm, SegmentForm
from .models import (
    DiscoveryJob,
    Event,
    MergeRequest,
    Placement,
    Profile,
    ProfileMerge,
    Recommender,
    Segment,
    SegmentRefresh,
    SegmentWebhook,
    TrainingRun,
    WriteKey,
)


@permission_required("personalization.view_recommender", raise_exception=True)
def recommender_list(request):
    recommenders = list(Recommender.objects.select_related("active_run").order_by("name"))
    trained = [
        {
            "name": r.name,
            "algorithm": r.algorithm,
            "metrics": r.active_run.metrics,
            "label": f"{r.name} v{r.active_run.version}",
        }
        for r in recommenders
        if r.active_run and r.active_run.metrics
    ]
    context = {
        "recommenders": recommenders,
        "comparison_chart": charts.recommender_comparison(trained) if trained else None,
        "tradeoff_chart": charts.accuracy_vs_coverage(trained) if trained else None,
        "placements": Placement.objects.select_related("recommender"),
    }
    return render(request, "personalization/recommender_list.html", context)


@permission_required("personalization.add_recommender", raise_exception=True)
def recommender_create(request):
    return _recommender_form(request, None)


@permission_required("personalization.change_recommender", raise_exception=True)
def recommender_edit(request, pk: int):
    return _recommender_form(request, get_object_or_404(Recommender, pk=pk))


def _recommender_form(request, recommender: Recommender | None):
    form = RecommenderForm(request.POST or None, instance=recommender)
    if request.method == "POST" and form.is_valid():
        recommender = form.save()
        messages.success(request, f"Recommender {recommender.name} saved. Train it to use the new settings.")
        return redirect(recommender)
    return render(
        request,
        "personalization/recommender_form.html",
        {
            "form": form,
            "recommender": recommender,
            "algorithm_params": services.ALGORITHM_PARAMS,
            "common_params": services.COMMON_PARAMS,
        },
    )


@permission_required("personalization.view_recommender", raise_exception=True)
def recommender_detail(request, pk: int):
    recommender = get_object_or_404(Recommender.objects.select_related("active_run"), pk=pk)
    runs = list(recommender.runs.all()[:20])
    succeeded = [
        {"version": r.version, "metrics": r.metrics}
        for r in reversed(runs)
        if r.status == TrainingRun.Status.SUCCEEDED
    ]
    history = (
        charts.metric_history(succeeded, metric=recommender.primary_metric) if len(succeeded) > 1 else None
    )
    return render(
        request,
        "personalization/recommender_detail.html",
        {"recommender": recommender, "runs": runs, "history_chart": history},
    )


@require_POST
@permission_required("personalization.add_trainingrun", raise_exception=True)
def recommender_train(request, pk: int):
    recommender = get_object_or_404(Recommender, pk=pk)
    try:
        run = services.training_run_request(recommender=recommender, requested_by=request.user)
    except services.TrainingError as exc:
        messages.error(request, str(exc))
        return redirect(recommender)
    messages.success(request, f"Training run v{run.version} queued.")
    return redirect(run)


@require_POST
@permission_required("personalization.change_recommender", raise_exception=True)
def training_run_activate(request, pk: int):
    run = get_object_or_404(TrainingRun.objects.select_related("recommender"), pk=pk)
    try:
        services.recommender_activate(run=run, user=request.user)
    except services.TrainingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{run.recommender.name} now serves v{run.version}.")
    return redirect(run.recommender)


@permission_required("personalization.view_trainingrun", raise_exception=True)
def training_run_detail(request, pk: int):
    run = get_object_or_404(TrainingRun.objects.select_related("recommender", "requested_by"), pk=pk)
    return render(request, "personalization/training_run_detail.html", {"run": run})


@permission_required("personalization.add_placement", raise_exception=True)
def placement_create(request):
    return _placement_form(request, None)


@permission_required("personalization.change_placement", raise_exception=True)
def placement_edit(request, key: str):
    return _placement_form(request, get_object_or_404(Placement, key=key))


def _placement_form(request, placement: Placement | None):
    form = PlacementForm(request.POST or None, instance=placement)
    if request.method == "POST" and form.is_valid():
        placement = form.save()
        messages.success(request, f"Placement {placement.key} saved.")
        return redirect("personalization:recommender_list")
    return render(request, "personalization/placement_form.html", {"form": form, "placement": placement})


@permission_required("personalization.view_recommender", raise_exception=True)
def profile_preview(request):
    """Preview as a profile: the home rows a person would see, with the reason for each pick."""
    user_id = request.GET.get("user_id", "").strip()
    rows, profile, error = [], None, ""
    if user_id:
        profile = serving.profile_resolve(user_id=user_id) or serving.profile_resolve(anonymous_id=user_id)
        if profile is None:
            error = f"No profile with user id or anonymous id {user_id!r}; showing what a newcomer sees."
        lookup = (
            {"user_id": profile.external_id} if profile and profile.external_id else {"anonymous_id": user_id}
        )
        rows = serving.home_rows(**lookup, k=12)
    samples = Profile.objects.filter(external_id__isnull=False).order_by("-last_seen")[:8]
    return render(
        request,
        "personalization/preview.html",
        {"rows": rows, "profile": profile, "user_id": user_id, "error": error, "samples": samples},
    )


PROFILE_COLUMNS = [
    tables.Column("profile", "Profile", ("external_id",)),
    tables.Column("first_seen", "First seen", ("first_seen",), descending_first=True),
    tables.Column("last_seen", "Last seen", ("last_seen",), descending_first=True),
    tables.Column("plan", "Plan"),
]


@permission_required("personalization.view_profile", raise_exception=True)
def profile_list(request):
    profiles = Profile.objects.all()
    query = request.GET.get("q", "").strip()
    if query:
        profiles = profiles.filter(Q(external_id__icontains=query) | Q(anonymous_ids__anonymous_id=query))
    table = tables.table(request, profiles, PROFILE_COLUMNS, default_sort="-last_seen")
    return render(
        request, "personalization/profile_list.html", {"table": table, "page": table.page, "q": query}
    )


# --- Audience: customer 360, privacy, zero-party quiz, write keys, merge requests -------------


def _day(value: str):
    try:
        return _datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.get_current_timezone())
    except ValueError:
        return None


@permission_required("personalization.view_profile", raise_exception=True)
def profile_detail(request, pk: int):
    """Customer 360: identities, traits, preferences, interactions by facet, event timeline."""
    profile = get_object_or_404(Profile, pk=pk)
    events = Event.objects.filter(profile=profile).select_related("item").order_by("-timestamp", "-pk")
    filters = {"type": request.GET.get("type", ""), "since": request.GET.get("since", ""),
               "until": request.GET.get("until", "")}  # fmt: skip
    if filters["type"] in Event.Type.values:
        events = events.filter(type=filters["type"])
    if since := _day(filters["since"]):
        events = events.filter(timestamp__gte=since)
    if until := _day(filters["until"]):
        events = events.filter(timestamp__lt=until + timezone.timedelta(days=1))
    affinities = profiles.tag_affinities(profile=profile)
    context = {
        "profile": profile,
        "anonymous_ids": profile.anonymous_ids.order_by("created_at"),
        "page": Paginator(events, 50).get_page(request.GET.get("page")),
        "filters": filters,
        "types": Event.Type.choices,
        "affinities": affinities,
        "affinity_chart": charts.tag_affinities((a.facet, a.tag, a.strength) for a in affinities)
        if affinities
        else None,
        "totals": profiles.interaction_totals(profile=profile),
        "preferences": profiles.preferences_for(profile=profile),
        "merges": ProfileMerge.objects.filter(survivor=profile)[:20],
        "merge_requests": MergeRequest.objects.filter(status=MergeRequest.Status.OPEN).filter(
            Q(profile=profile) | Q(into=profile)
        ),
    }
    return render(request, "personalization/profile_detail.html", context)


@permission_required("personalization.export_data", raise_exception=True)
def profile_export(request, pk: int):
    profile = get_object_or_404(Profile, pk=pk)
    data = profiles.profile_export(profile=profile)
    response = HttpResponse(json.dumps(data, indent=2, default=str), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="profile-{profile.pk}.json"'
    return response


@permission_required("personalization.delete_profile", raise_exception=True)
def profile_delete(request, pk: int):
    profile = get_object_or_404(Profile, pk=pk)
    if request.method == "POST":
        log = profiles.profile_delete(profile=profile, deleted_by=request.user)
        messages.success(
            request, f"Profile deleted ({log.counts.get('events', 0)} events). Logged as {log.id_hash[:12]}…."
        )
        return redirect("personalization:profile_list")
    counts = {"events": profile.events.count(), "anonymous_ids": profile.anonymous_ids.count()}
    return render(request, "personalization/profile_delete.html", {"profile": profile, "counts": counts})


@permission_required("personalization.add_declaredpreference", raise_exception=True)
def profile_quiz(request, pk: int):
    """Zero-party data: favourite tags per facet and dislikes, stored as declared preferences."""
    profile = get_object_or_404(Profile, pk=pk)
    facets = list(Tag.objects.filter(depth=1, retired=False).order_by("name"))
    tags = Tag.objects.filter(depth=2, retired=False).order_by("path")
    by_facet = {f.path: {"facet": f, "tags": []} for f in facets}
    for tag in tags:
        if tag.path[: Tag.steplen] in by_facet:
            by_facet[tag.path[: Tag.steplen]]["tags"].append(tag)
    if request.method == "POST":
        liked = request.POST.getlist("liked")
        disliked = request.POST.getlist("disliked")
        try:
            profiles.preferences_declare(profile=profile, liked=liked, disliked=disliked, origin="quiz")
        except profiles.ProfileError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Saved {len(liked)} likes and {len(disliked)} dislikes.")
            return redirect("personalization:profile_detail", pk=profile.pk)
    current = profiles.preferences_for(profile=profile)
    return render(
        request,
        "personalization/profile_quiz.html",
        {"profile": profile, "facets": [f for f in by_facet.values() if f["tags"]], "current": current},
    )


@permission_required("personalization.add_writekey", raise_exception=True)
def write_keys(request):
    new_key = None
    if request.method == "POST":
        name = request.POST.get("source", "").strip()
        if not name:
            messages.error(request, "Name the source that will use the key.")
        else:
            write_key, new_key = tracking.write_key_create(source_name=name, created_by=request.user)
            messages.success(
                request, f"Write key created for {write_key.source}. Copy it now: it is shown once."
            )
    keys = WriteKey.objects.select_related("source", "created_by")
    return render(request, "personalization/write_keys.html", {"keys": keys, "new_key": new_key})


@require_POST
@permission_required("personalization.change_writekey", raise_exception=True)
def write_key_revoke(request, pk: int):
    write_key = get_object_or_404(WriteKey, pk=pk)
    if tracking.write_key_revoke(write_key=write_key, revoked_by=request.user):
        messages.success(request, f"Key {write_key.prefix}… revoked.")
    return redirect("personalization:write_keys")


@permission_required("personalization.change_mergerequest", raise_exception=True)
def merge_requests(request):
    requests_ = MergeRequest.objects.select_related("profile", "into", "resolved_by")
    status = request.GET.get("status", "open")
    if status in MergeRequest.Status.values:
        requests_ = requests_.filter(status=status)
    page = Paginator(requests_, 50).get_page(request.GET.get("page"))
    return render(request, "personalization/merge_requests.html", {"page": page, "status": status})


@require_POST
@permission_required("personalization.change_mergerequest", raise_exception=True)
def merge_request_resolve(request, pk: int):
    merge_request = get_object_or_404(MergeRequest.objects.select_related("profile", "into"), pk=pk)
    approve = request.POST.get("decision") == "merge"
    try:
        identity.merge_request_resolve(request=merge_request, approve=approve, resolved_by=request.user)
    except identity.IdentityError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Profiles merged." if approve else "Request dismissed.")
    return redirect("personalization:merge_requests")


# --- Segments ----------------------------------------------------------------------------------


def _segment_builder_context() -> dict:
    return {
        "event_types": list(Event.Type.values),
        "tags": list(
            Tag.objects.filter(retired=False).order_by("slug_path").values_list("slug_path", flat=True)[:2000]
        ),
        "segments": list(Segment.objects.order_by("name").values("id", "name")),
        "trait_ops": list(segments.TRAIT_OPS),
        "rfm_groups": list(segments.RFM_GROUPS),
        "engagement_metrics": list(segments.ENGAGEMENT_METRICS),
        "experiments": _experiment_variants(),
    }


def _experiment_variants() -> dict[str, list[str]]:
    """Experiment key -> its variant keys, for the builder's "assigned to a variant" condition."""
    variants: dict[str, list[str]] = {}
    rows = Variant.objects.order_by("experiment__key", "position").values_list("experiment__key", "key")
    for experiment_key, variant_key in rows[:2000]:
        variants.setdefault(experiment_key, []).append(variant_key)
    return variants


SEGMENT_COLUMNS = [
    tables.Column("name", "Name", ("name",)),
    tables.Column("kind", "Kind", ("kind", "name")),
    tables.Column("size", "Size", ("size", "name"), numeric=True, descending_first=True),
    tables.Column("history", "History"),
    tables.Column("refreshed", "Refreshed", ("last_refreshed_at", "name"), descending_first=True),
    tables.Column("schedule", "Schedule", ("refresh_every_minutes", "name")),
]


@permission_required("personalization.view_segment", raise_exception=True)
def segment_list(request):
    found = Segment.objects.all()
    query = request.GET.get("q", "").strip()
    if query:
        found = found.filter(Q(name__icontains=query) | Q(description__icontains=query))
    kind = request.GET.get("kind", "")
    if kind in Segment.Kind.values:
        found = found.filter(kind=kind)
    table = tables.table(request, found, SEGMENT_COLUMNS, default_sort="name")
    items = list(table.page.object_list)
    sizes: dict[int, list[int]] = {}
    history = SegmentRefresh.objects.filter(
        status=SegmentRefresh.Status.SUCCEEDED, segment__in=[s.pk for s in items]
    ).order_by("started_at", "pk")
    for segment_id, size in history.values_list("segment_id", "size"):
        sizes.setdefault(segment_id, []).append(size or 0)
    for segment in items:
        segment.sparkline = segments.sparkline_points(sizes.get(segment.pk, [])[-30:])
    context = {
        "segments": items,
        "table": table,
        "page": table.page,
        "q": query,
        "kind": kind,
        "kinds": Segment.Kind.choices,
        "filtered": bool(query or kind),
    }
    return render(request, "personalization/segment_list.html", context)


@permission_required("personalization.add_segment", raise_exception=True)
def segment_create(request):
    return _segment_form(request, segment=None)


@permission_required("personalization.change_segment", raise_exception=True)
def segment_edit(request, pk: int):
    return _segment_form(request, segment=get_object_or_404(Segment, pk=pk))


def _segment_form(request, *, segment):
    initial = {"rule": {"version": 1, "root": {"op": "and", "not": False, "conditions": []}}}
    form = SegmentForm(request.POST or None, request.FILES or None, instance=segment, initial=initial)
    if request.method == "POST" and form.is_valid():
        created = segment is None
        segment = form.save(commit=False)
        if created:
            segment.created_by = request.user
        segment.save()
        upload = form.cleaned_data.get("upload")
        if segment.kind == Segment.Kind.STATIC and upload:
            # Decoded and checked by SegmentForm.clean_upload (a bad file is a form error).
            report = segments.segment_upload(segment=segment, file=upload)
            unknown = report.unknown
            note = f" Unknown ids ({len(unknown)}): {', '.join(unknown[:20])}" if unknown else ""
            messages.success(request, f"{report.matched} profiles uploaded.{note}")
        elif segment.kind == Segment.Kind.DYNAMIC:
            outbox.enqueue(tasks.segment_refresh, segment.pk, "manual")
            messages.success(request, f"Segment {segment.name} saved; a worker is computing its members.")
        return redirect(segment)
    context = {"form": form, "segment": segment, "builder": _segment_builder_context()}
    return render(request, "personalization/segment_form.html", context)


@permission_required("personalization.view_segment", raise_exception=True)
def segment_estimate(request):
    import json

    if request.method != "POST":
        return JsonResponse({"error": "POST a rule.", "field": None, "details": {}}, status=405)
    try:
        rule = json.loads(request.body or b"{}").get("rule")
        return JsonResponse({"size": segments.segment_estimate(rule=rule)})
    except (ValueError, AttributeError) as exc:
        path = getattr(exc, "path", None)
        message = f"{path}: {exc.message}" if path else "Invalid JSON."
        return JsonResponse({"error": message, "field": path, "details": {}}, status=400)


@permission_required("personalization.view_segment", raise_exception=True)
def segment_detail(request, pk: int):
    segment = get_object_or_404(Segment, pk=pk)
    return render(request, "personalization/segment_detail.html", _segment_detail_context(segment))


def _segment_detail_context(segment, **extra) -> dict:
    history = segments.segment_history(segment=segment)
    per_day = (
        segment.refreshes.filter(status=SegmentRefresh.Status.SUCCEEDED)
        .annotate(day=TruncDate("started_at"))
        .values("day")
        .annotate(entered=Sum("entered"), exited=Sum("exited"))
        .order_by("day")
    )
    members = (
        segment.memberships.filter(exited_at__isnull=True)
        .select_related("profile")
        .order_by("-entered_at", "profile_id")
    )
    context = {
        "segment": segment,
        "size_chart": segment_charts.size_over_time((r.started_at, r.size or 0) for r in history),
        "flow_chart": segment_charts.entries_exits_per_day(
            (r["day"], r["entered"], r["exited"]) for r in per_day
        ),
        "members": members[:100],
        "refreshes": segment.refreshes.all()[:10],
        "running": segment.refreshes.filter(status=SegmentRefresh.Status.RUNNING).exists(),
        "usage": segments.segment_usage(segment=segment),
        "affinity_chart": segment_charts.tag_affinity_profile(segments.segment_tag_affinity(segment=segment)),
        "overlap_chart": segment_charts.overlap_with_segments(
            segments.segment_overlap(segment=segment), size=segment.size
        ),
        "webhooks": segment.webhooks.all(),
        "deliveries": webhooks.segment_deliveries(segment=segment),
        **extra,
    }
    return context


@require_POST
@permission_required("personalization.change_segment", raise_exception=True)
def segment_webhook_create(request, pk: int):
    """Add a webhook; the page answers with the secret, shown this once."""
    segment = get_object_or_404(Segment, pk=pk)
    try:
        webhook, secret = webhooks.webhook_create(
            segment=segment,
            url=request.POST.get("url", ""),
            on_enter="on_enter" in request.POST,
            on_exit="on_exit" in request.POST,
            created_by=request.user,
        )
    except webhooks.WebhookError as exc:
        context = _segment_detail_context(
            segment,
            webhook_error=str(exc),
            webhook_error_field=exc.field,
            webhook_url=request.POST.get("url", ""),
        )
        return render(request, "personalization/segment_detail.html", context, status=400)
    context = _segment_detail_context(segment, new_webhook=webhook, new_secret=secret)
    return render(request, "personalization/segment_detail.html", context)


@require_POST
@permission_required("personalization.change_segment", raise_exception=True)
def segment_webhook_delete(request, pk: int):
    webhook = get_object_or_404(SegmentWebhook.objects.select_related("segment"), pk=pk)
    segment = webhook.segment
    webhooks.webhook_delete(webhook=webhook, deleted_by=request.user)
    messages.success(request, "Webhook deleted.")
    return redirect(segment)


@require_POST
@permission_required("personalization.change_segment", raise_exception=True)
def segment_refresh(request, pk: int):
    segment = get_object_or_404(Segment, pk=pk, kind=Segment.Kind.DYNAMIC)
    outbox.enqueue(tasks.segment_refresh, segment.pk, "manual")
    messages.success(request, "Refresh queued; the size updates when the worker finishes.")
    return redirect(segment)


@permission_required("personalization.view_segment", raise_exception=True)
def segment_members_export(request, pk: int):
    import csv

    if not request.user.has_perm("personalization.export_data"):
        raise PermissionDenied("Exporting needs the export permission.")
    segment = get_object_or_404(Segment, pk=pk)
    rows = (
        segment.memberships.filter(exited_at__isnull=True)
        .order_by("profile_id")
        .values_list("profile_id", "profile__external_id", "entered_at")
    )

    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())

    def lines():
        yield writer.writerow(["profile_id", "user_id", "entered_at"])
        for profile_id, user_id, entered_at in rows.iterator(chunk_size=2000):
            yield writer.writerow([profile_id, user_id or "", entered_at.isoformat()])

    response = StreamingHttpResponse(lines(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="segment-{segment.key}.csv"'
    return response


@permission_required("personalization.add_segment", raise_exception=True)
def segment_discover(request):
    """Start a clustering of the audience on the heavy queue (it takes a minute on the demo
    data), and list the recent ones."""
    error = ""
    k = request.POST.get("k", "").strip()
    if request.method == "POST":
        if k and not (k.isdigit() and 2 <= int(k) <= 20):
            error = "k must be a whole number from 2 to 20, or empty to choose by silhouette."
        else:
            job = segments.discovery_job_create(k=int(k) if k else None, created_by=request.user)
            messages.success(request, "Discovery queued; this page follows its progress.")
            return redirect(job)
    jobs = DiscoveryJob.objects.select_related("created_by")[:20]
    context = {"jobs": jobs, "k": k, "error": error}
    return render(request, "personalization/segment_discover.html", context, status=400 if error else 200)


@permission_required("personalization.add_segment", raise_exception=True)
def segment_discovery_detail(request, pk: int):
    job = get_object_or_404(DiscoveryJob, pk=pk)
    context = {"job": job, "clusters": segments.discovery_job_clusters(job=job)}
    return render(request, "personalization/segment_discovery.html", context)


@require_POST
@permission_required("personalization.add_segment", raise_exception=True)
def segment_discovery_save(request, pk: int):
    """Save one cluster of a finished discovery as a segment."""
    job = get_object_or_404(DiscoveryJob, pk=pk, status=DiscoveryJob.Status.SUCCEEDED)
    index = request.POST.get("cluster", "")
    try:
        if not index.lstrip("-").isdigit():
            raise segments.RuleError("cluster", "choose a cluster.")
        segment = segments.discovery_job_save_cluster(
            job=job, index=int(index), name=request.POST.get("name", ""), created_by=request.user
        )
    except segments.RuleError as exc:
        context = {"job": job, "clusters": segments.discovery_job_clusters(job=job), "error": exc.message}
        return render(request, "personalization/segment_discovery.html", context, status=400)
    messages.success(request, f"Saved {segment.size} profiles as {segment.name}.")
    return redirect(segment)
