from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from recsite import outbox, tables

from . import services, tasks
from .forms import ConcludeForm, ExperimentForm, MetricForm, PowerForm, VariantFormSet
from .models import Experiment, Metric

CHANGE = "experiments.change_experiment"


def _json(payload: dict) -> str:
    return json.dumps(payload) if payload else ""


def _experiment(key: str) -> Experiment:
    return get_object_or_404(Experiment.objects.select_related("owner", "decision_variant"), key=key)


EXPERIMENT_COLUMNS = [
    tables.Column("name", "Experiment", ("name",)),
    tables.Column("status", "Status", ("status", "name")),
    tables.Column("variants", "Variants"),
    tables.Column("traffic", "Traffic", ("traffic_percent", "name"), numeric=True, descending_first=True),
    tables.Column("owner", "Owner", ("owner__username", "name")),
    tables.Column("started", "Started", ("started_at", "name"), descending_first=True),
]


@permission_required("experiments.view_experiment", raise_exception=True)
def experiment_list(request):
    experiments = Experiment.objects.select_related("owner").prefetch_related("variants")
    query = request.GET.get("q", "").strip()
    if query:
        experiments = experiments.filter(Q(name__icontains=query) | Q(key__icontains=query))
    status = request.GET.get("status", "")
    if status in Experiment.Status.values:
        experiments = experiments.filter(status=status)
    table = tables.table(request, experiments, EXPERIMENT_COLUMNS, default_sort="-started")
    context = {
        "experiments": table.page.object_list,
        "table": table,
        "page": table.page,
        "q": query,
        "status": status,
        "statuses": Experiment.Status.choices,
        "filtered": bool(query or status),
    }
    return render(request, "experiments/experiment_list.html", context)


@permission_required("experiments.view_experiment", raise_exception=True)
def experiment_detail(request, key: str):
    experiment = _experiment(key)
    context = {
        "experiment": experiment,
        "variants": experiment.variants.all(),
        "metrics": experiment.experiment_metrics.select_related("metric").order_by("role"),
        "phases": experiment.phases.all(),
        "problems": services.experiment_problems(experiment=experiment)
        if experiment.status == "draft"
        else [],
        "report": services.experiment_report(experiment=experiment),
        "conclude_form": ConcludeForm(experiment=experiment) if experiment.status == "stopped" else None,
    }
    return render(request, "experiments/experiment_detail.html", context)


@permission_required(CHANGE, raise_exception=True)
def experiment_edit(request, key: str | None = None):
    experiment = _experiment(key) if key else Experiment(owner=request.user)
    kind_before = experiment.kind
    if experiment.status == Experiment.Status.CONCLUDED:
        messages.error(request, "A concluded experiment cannot change.")
        return redirect(experiment)
    initial = [
        {"key": v.key, "name": v.name, "weight": v.weight, "payload": _json(v.payload)}
        for v in (experiment.variants.all() if experiment.pk else [])
    ] or [
        {"key": "control", "name": "Control", "weight": 0.5},
        {"key": "treatment", "name": "Treatment", "weight": 0.5},
    ]
    form = ExperimentForm(request.POST or None, instance=experiment)
    # Initial rows only on GET: on POST, rows equal to their initial count as unchanged and are skipped.
    if request.method == "POST":
        formset = VariantFormSet(request.POST, prefix="variants")
    else:
        formset = VariantFormSet(initial=initial, prefix="variants")
    if request.method == "POST" and form.is_valid() and formset.is_valid():
        experiment = form.save(commit=False)
        experiment.segment_ids = form.cleaned_data["segments"]
        experiment.breakdown_segment_ids = form.cleaned_data["breakdown_segments"]
        changed = list(form.changed_data)
        if "segments" in changed:
            changed.append("segment_ids")
        if "breakdown_segments" in changed:
            changed.append("breakdown_segment_ids")
        if "kind" in changed and experiment.kind == kind_before:  # not sent: the default stood in
            changed.remove("kind")
        try:
            services.experiment_save(
                experiment=experiment,
                changed_fields=[
                    f
                    for f in changed
                    if f
                    not in (
                        "primary_metric",
                        "secondary_metrics",
                        "guardrail_metrics",
                        "segments",
                        "breakdown_segments",
                        "new_phase_reason",
                        "version",
                    )
                ],
                variants=formset.variants(),
                metrics=form.metric_roles(),
                new_phase_reason=form.cleaned_data.get("new_phase_reason", ""),
            )
        except services.ExperimentError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Saved “{experiment.name}”.")
            return redirect(experiment)
    return render(
        request,
        "experiments/experiment_form.html",
        {"form": form, "formset": formset, "experiment": experiment if experiment.pk else None},
    )


@require_POST
@permission_required(CHANGE, raise_exception=True)
def experiment_transition(request, key: str, action: str):
    experiment = _experiment(key)
    operations = {
        "start": services.experiment_start,
        "pause": services.experiment_pause,
        "stop": services.experiment_stop,
    }
    if action not in operations:
        return HttpResponse(status=404)
    try:
        operations[action](experiment=experiment, user=request.user)
    except services.ExperimentError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Experiment {experiment.get_status_display().lower()}.")
    return redirect(experiment)


@require_POST
@permission_required(CHANGE, raise_exception=True)
def experiment_conclude(request, key: str):
    experiment = _experiment(key)
    form = ConcludeForm(request.POST, experiment=experiment)
    if form.is_valid():
        try:
            services.experiment_conclude(
                experiment=experiment,
                decision=form.cleaned_data["decision"],
                variant=form.cleaned_data["variant"],
                note=form.cleaned_data["note"],
            )
        except services.ExperimentError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Experiment concluded.")
    else:
        messages.error(request, "Choose a decision.")
    return redirect(experiment)


@require_POST
@permission_required(CHANGE, raise_exception=True)
def experiment_analyze(request, key: str):
    experiment = _experiment(key)
    outbox.enqueue(tasks.experiment_analyze, experiment.pk)
    messages.success(request, "Analysis queued; reload in a moment.")
    return redirect(experiment)


@permission_required("personalization.export_data", raise_exception=True)
def experiment_export(request, key: str):
    experiment = _experiment(key)
    snapshot = services.snapshot_latest(experiment=experiment)
    if snapshot is None:
        messages.error(request, "No analysis to export yet.")
        return redirect(experiment)
    response = HttpResponse(services.results_csv(snapshot=snapshot), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{experiment.key}-{snapshot.as_of:%Y%m%d%H%M}.csv"'
    )
    return response


@permission_required("experiments.view_experiment", raise_exception=True)
def metric_list(request):
    return render(request, "experiments/metric_list.html", {"metrics": Metric.objects.all()})


@permission_required(CHANGE, raise_exception=True)
def metric_create(request):
    form = MetricForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        metric = form.save()
        messages.success(request, f"Metric “{metric.name}” created.")
        return redirect("experiments:metric_list")
    return render(request, "experiments/metric_form.html", {"form": form})


@permission_required("experiments.view_experiment", raise_exception=True)
def power_calculator(request):
    form = PowerForm(request.GET or None)
    plan = None
    if request.GET and form.is_valid():
        data = form.cleaned_data
        plan = services.power_plan(
            baseline=data["baseline"],
            sd=data.get("sd"),
            mde_percent=data.get("mde"),
            n_per_variant=data.get("n_per_variant"),
            alpha=data["alpha"],
            power=data["power"],
        )
    return render(request, "experiments/power.html", {"form": form, "plan": plan})
