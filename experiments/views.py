from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, render

from .models import Experiment


@permission_required("experiments.view_experiment", raise_exception=True)
def experiment_list(request):
    experiments = Experiment.objects.select_related("owner").prefetch_related("variants")
    return render(request, "experiments/experiment_list.html", {"experiments": experiments})


@permission_required("experiments.view_experiment", raise_exception=True)
def experiment_detail(request, key: str):
    experiment = get_object_or_404(Experiment.objects.select_related("owner"), key=key)
    return render(
        request,
        "experiments/experiment_detail.html",
        {"experiment": experiment, "variants": experiment.variants.all()},
    )
