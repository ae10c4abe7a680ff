from django.urls import path

from . import api

urlpatterns = [
    path("items", api.ItemList.as_view(), name="api_item_list"),
    path("items/<str:external_id>", api.ItemDetail.as_view(), name="api_item_detail"),
]
