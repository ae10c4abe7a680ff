from django.urls import path

from . import api

urlpatterns = [
    path("recommendations", api.Recommendations.as_view(), name="api_recommendations"),
    path("recommenders", api.RecommenderList.as_view(), name="api_recommender_list"),
    path("recommenders/<int:pk>", api.RecommenderDetail.as_view(), name="api_recommender_detail"),
    path("recommenders/<int:pk>/train", api.RecommenderTrain.as_view(), name="api_recommender_train"),
    path("training-runs", api.TrainingRunList.as_view(), name="api_training_run_list"),
    path("training-runs/<int:pk>", api.TrainingRunDetail.as_view(), name="api_training_run_detail"),
    path(
        "training-runs/<int:pk>/activate", api.TrainingRunActivate.as_view(), name="api_training_run_activate"
    ),
    path("placements", api.PlacementList.as_view(), name="api_placement_list"),
    path("placements/<slug:key>", api.PlacementDetail.as_view(), name="api_placement_detail"),
    path("items/<str:external_id>/similar", api.SimilarItems.as_view(), name="api_similar_items"),
    path("home", api.Home.as_view(), name="api_home"),
]

urlpatterns += [
    path("track", api.Track.as_view(), name="api_track"),
    path("identify", api.Identify.as_view(), name="api_identify"),
    path("page", api.Page.as_view(), name="api_page"),
    path("alias", api.Alias.as_view(), name="api_alias"),
    path("batch", api.Batch.as_view(), name="api_batch"),
    path(
        "profiles/<str:user_id>/preferences", api.ProfilePreferences.as_view(), name="api_profile_preferences"
    ),
    path("profiles/<str:user_id>/export", api.ProfileExport.as_view(), name="api_profile_export"),
    path("profiles/<str:user_id>/segments", api.ProfileSegments.as_view(), name="api_profile_segments"),
    path("profiles/<str:user_id>", api.ProfileDelete.as_view(), name="api_profile_delete"),
]

urlpatterns += [
    path("segments", api.SegmentList.as_view(), name="api_segment_list"),
    path("segments/estimate", api.SegmentEstimate.as_view(), name="api_segment_estimate"),
    path("segments/<int:pk>/members", api.SegmentMembers.as_view(), name="api_segment_members"),
    path("segments/<int:pk>/refresh", api.SegmentRefreshStart.as_view(), name="api_segment_refresh"),
    # <segment>, not <pk>: the webhook is the object of the second route (and of the matrix's pk).
    path("segments/<int:segment>/webhooks", api.SegmentWebhookList.as_view(), name="api_segment_webhooks"),
    path(
        "segments/<int:segment>/webhooks/<int:pk>",
        api.SegmentWebhookDetail.as_view(),
        name="api_segment_webhook",
    ),
]
