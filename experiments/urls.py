from django.urls import path

from . import views

app_name = "experiments"
urlpatterns = [
    path("", views.experiment_list, name="experiment_list"),
    path("new/", views.experiment_edit, name="experiment_create"),
    path("metrics/", views.metric_list, name="metric_list"),
    path("metrics/new/", views.metric_create, name="metric_create"),
    path("power/", views.power_calculator, name="power_calculator"),
    path("<slug:key>/", views.experiment_detail, name="experiment_detail"),
    path("<slug:key>/edit/", views.experiment_edit, name="experiment_edit"),
    path("<slug:key>/analyze/", views.experiment_analyze, name="experiment_analyze"),
    path("<slug:key>/conclude/", views.experiment_conclude, name="experiment_conclude"),
    path("<slug:key>/export.csv", views.experiment_export, name="experiment_export"),
    path("<slug:key>/<slug:action>/", views.experiment_transition, name="experiment_transition"),
]
