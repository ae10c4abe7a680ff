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


@permission_required("personalization.view_profile", raise_exception=True)
def profile_detail(request, pk: int):
    profile = get_object_or_404(Profile, pk=pk)
    events = Event.objects.filter(profile=profile).select_related("item").order_by("-timestamp")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "personalization/profile_detail.html",
        {"profile": profile, "anonymous_ids": profile.anonymous_ids.all(), "page": page},
    )
