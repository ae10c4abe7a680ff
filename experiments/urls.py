from django.urls import path

from . import views

app_name = "experiments"
urlpatterns = [
    path("", views.experiment_list, name="experiment_list"),
    path("<slug:key>/", views.experiment_detail, name="experiment_detail"),
]
