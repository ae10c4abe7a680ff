from django.urls import path

from . import api

urlpatterns = [
    path(
        "experiments/<slug:key>/assignment",
        api.ExperimentAssignment.as_view(),
        name="api_experiment_assignment",
    ),
    path("experiments/<slug:key>/results", api.ExperimentResults.as_view(), name="api_experiment_results"),
    path("experiments/<slug:key>/analyze", api.ExperimentAnalyze.as_view(), name="api_experiment_analyze"),
]
