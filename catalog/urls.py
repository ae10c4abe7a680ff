from django.urls import path

from . import views

app_name = "catalog"
urlpatterns = [
    path("", views.item_list, name="item_list"),
    path("items/bulk-tag/", views.items_bulk_tag, name="items_bulk_tag"),
    path("items/<int:pk>/", views.item_detail, name="item_detail"),
    path("items/<int:pk>/tags/", views.item_tag_add, name="item_tag_add"),
    path("items/<int:pk>/tags/<int:tag_pk>/remove/", views.item_tag_remove, name="item_tag_remove"),
    path("items/<int:pk>/undo/", views.item_undo, name="item_undo"),
    path(
        "items/<int:pk>/suggestions/accept-all/",
        views.item_suggestions_accept_all,
        name="item_suggestions_accept_all",
    ),
    path("suggestions/<int:pk>/<str:decision>/", views.suggestion_decide, name="suggestion_decide"),
    path("queue/", views.queue, name="queue"),
    path("taxonomy/", views.taxonomy, name="taxonomy"),
    path("taxonomy/train/", views.suggestion_model_train, name="suggestion_model_train"),
    path("tags/new/", views.tag_create, name="tag_create"),
    path("tags/<int:pk>/", views.tag_detail, name="tag_detail"),
    path("tags/<int:pk>/edit/", views.tag_edit, name="tag_edit"),
    path("tags/<int:pk>/move/", views.tag_move, name="tag_move"),
    path("tags/<int:pk>/merge/", views.tag_merge, name="tag_merge"),
    path("tags/<int:pk>/retire/", views.tag_retire, name="tag_retire"),
    path("tags/<int:pk>/delete/", views.tag_delete, name="tag_delete"),
    path("coverage/", views.coverage, name="coverage"),
    path("import/", views.import_upload, name="import_upload"),
    path("import/<int:pk>/", views.import_detail, name="import_detail"),
    path("import/<int:pk>/apply/", views.import_apply, name="import_apply"),
    path("import/<int:pk>/status/", views.import_status, name="import_status"),
    path("export/", views.export, name="export"),
]
