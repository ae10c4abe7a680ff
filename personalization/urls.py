from django.urls import path

from . import views

app_name = "personalization"
urlpatterns = [
    path("recommendations/", views.recommender_list, name="recommender_list"),
    path("recommendations/new/", views.recommender_create, name="recommender_create"),
    path("recommendations/<int:pk>/", views.recommender_detail, name="recommender_detail"),
    path("recommendations/<int:pk>/train/", views.recommender_train, name="recommender_train"),
    path("recommendations/runs/<int:pk>/", views.training_run_detail, name="training_run_detail"),
    path("audience/", views.profile_list, name="profile_list"),
    path("audience/profiles/<int:pk>/", views.profile_detail, name="profile_detail"),
]
