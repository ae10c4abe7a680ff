from django.urls import path

from . import api

urlpatterns = [
    path("items", api.ItemList.as_view(), name="api_item_list"),
    path("items/<str:external_id>", api.ItemDetail.as_view(), name="api_item_detail"),
    path("items/<str:external_id>/deactivate", api.ItemDeactivate.as_view(), name="api_item_deactivate"),
    path("items/<str:external_id>/tags", api.ItemTags.as_view(), name="api_item_tags"),
    path(
        "items/<str:external_id>/tags/<path:tag_path>",
        api.ItemTagDelete.as_view(),
        name="api_item_tag_delete",
    ),
    path("taxonomy", api.Taxonomy.as_view(), name="api_taxonomy"),
    path("suggestions", api.SuggestionList.as_view(), name="api_suggestion_list"),
    path("suggestions/<int:pk>/accept", api.SuggestionAccept.as_view(), name="api_suggestion_accept"),
    path("suggestions/<int:pk>/reject", api.SuggestionReject.as_view(), name="api_suggestion_reject"),
]
