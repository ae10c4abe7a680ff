from django.urls import path

from . import api

urlpatterns = [
    path("recommendations", api.Recommendations.as_view(), name="api_recommendations"),
    path("recommenders", api.RecommenderList.as_view(), name="api_recommender_list"),
    path("recommenders/<int:pk>/train", api.RecommenderTrain.as_view(), name="api_recommender_train"),
    path("training-runs/<int:pk>", api.TrainingRunDetail.as_view(), name="api_training_run_detail"),
]
