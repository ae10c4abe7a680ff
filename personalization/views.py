from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from . import services
from .forms import RecommenderForm
from .models import Event, Profile, Recommender, TrainingRun


@permission_required("personalization.view_recommender", raise_exception=True)
def recommender_list(request):
    recommenders = Recommender.objects.select_related("active_run").order_by("name")
    return render(request, "personalization/recommender_list.html", {"recommenders": recommenders})


@permission_required("personalization.add_recommender", raise_exception=True)
def recommender_create(request):
    form = RecommenderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        recommender = form.save()
        messages.success(request, f"Recommender {recommender.name} created. Train it to activate a model.")
        return redirect(recommender)
    return render(request, "personalization/recommender_form.html", {"form": form})


@permission_required("personalization.view_recommender", raise_exception=True)
def recommender_detail(request, pk: int):
    recommender = get_object_or_404(Recommender.objects.select_related("active_run"), pk=pk)
    runs = recommender.runs.all()[:20]
    return render(
        request, "personalization/recommender_detail.html", {"recommender": recommender, "runs": runs}
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


@permission_required("personalization.view_trainingrun", raise_exception=True)
def training_run_detail(request, pk: int):
    run = get_object_or_404(TrainingRun.objects.select_related("recommender", "requested_by"), pk=pk)
    return render(request, "personalization/training_run_detail.html", {"run": run})


@permission_required("personalization.view_profile", raise_exception=True)
def profile_list(request):
    profiles = Profile.objects.order_by("-last_seen", "pk")
    query = request.GET.get("q", "").strip()
    if query:
        profiles = profiles.filter(Q(external_id__icontains=query) | Q(anonymous_ids__anonymous_id=query))
    page = Paginator(profiles, 50).get_page(request.GET.get("page"))
    return render(request, "personalization/profile_list.html", {"page": page, "q": query})


# --- Audience: customer 360, privacy, zero-party quiz, write keys, merge requests -------------

import json  # noqa: E402
from datetime import datetime as _datetime  # noqa: E402

from django.http import HttpResponse  # noqa: E402
from django.utils import timezone  # noqa: E402

from catalog.models import Tag  # noqa: E402

from . import charts, identity, profiles, tracking  # noqa: E402
from .models import MergeRequest, ProfileMerge, WriteKey  # noqa: E402


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
    if tracking.write_key_revoke(write_key=write_key):
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
