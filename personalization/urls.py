from django.urls import path

from . import views

app_name = "personalization"
urlpatterns = [
    path("recommendations/", views.recommender_list, name="recommender_list"),
    path("recommendations/new/", views.recommender_create, name="recommender_create"),
    path("recommendations/<int:pk>/", views.recommender_detail, name="recommender_detail"),
    path("recommendations/<int:pk>/edit/", views.recommender_edit, name="recommender_edit"),
    path("recommendations/<int:pk>/train/", views.recommender_train, name="recommender_train"),
    path("recommendations/runs/<int:pk>/", views.training_run_detail, name="training_run_detail"),
    path(
        "recommendations/runs/<int:pk>/activate/", views.training_run_activate, name="training_run_activate"
    ),
    path("recommendations/placements/new/", views.placement_create, name="placement_create"),
    path("recommendations/placements/<slug:key>/", views.placement_edit, name="placement_edit"),
    path("recommendations/preview/", views.profile_preview, name="recommender_preview"),
    path("audience/", views.profile_list, name="profile_list"),
    path("audience/profiles/<int:pk>/", views.profile_detail, name="profile_detail"),
]

urlpatterns += [
    path("audience/profiles/<int:pk>/export/", views.profile_export, name="profile_export"),
    path("audience/profiles/<int:pk>/delete/", views.profile_delete, name="profile_delete"),
    path("audience/profiles/<int:pk>/quiz/", views.profile_quiz, name="profile_quiz"),
    path("audience/write-keys/", views.write_keys, name="write_keys"),
    path("audience/write-keys/<int:pk>/revoke/", views.write_key_revoke, name="write_key_revoke"),
    path("audience/merge-requests/", views.merge_requests, name="merge_requests"),
    path(
        "audience/merge-requests/<int:pk>/resolve/", views.merge_request_resolve, name="merge_request_resolve"
    ),
]

urlpatterns += [
    path("segments/", views.segment_list, name="segment_list"),
    path("segments/new/", views.segment_create, name="segment_create"),
    path("segments/estimate/", views.segment_estimate, name="segment_estimate"),
    path("segments/discover/", views.segment_discover, name="segment_discover"),
    path("segments/<int:pk>/", views.segment_detail, name="segment_detail"),
    path("segments/<int:pk>/edit/", views.segment_edit, name="segment_edit"),
    path("segments/<int:pk>/refresh/", views.segment_refresh, name="segment_refresh"),
    path("segments/<int:pk>/members.csv", views.segment_members_export, name="segment_members_export"),
    path("segments/<int:pk>/webhooks/", views.segment_webhook_create, name="segment_webhook_create"),
    path("segments/webhooks/<int:pk>/delete/", views.segment_webhook_delete, name="segment_webhook_delete"),
    path("segments/discover/<int:pk>/", views.segment_discovery_detail, name="segment_discovery_detail"),
    path("segments/discover/<int:pk>/save/", views.segment_discovery_save, name="segment_discovery_save"),
]
