from django.db.models import Prefetch
from rest_framework import generics, serializers

from .models import Item, ItemTag


class ItemTagSerializer(serializers.ModelSerializer):
    path = serializers.CharField(source="tag.slug_path")
    name = serializers.CharField(source="tag.name")

    class Meta:
        model = ItemTag
        fields = ["path", "name", "source", "confidence"]


class ItemSerializer(serializers.ModelSerializer):
    tags = ItemTagSerializer(source="item_tags", many=True, read_only=True)

    class Meta:
        model = Item
        fields = [
            "id", "external_id", "title", "description", "kind", "release_date", "image_url",
            "metadata", "active", "tags", "created_at", "updated_at",
        ]  # fmt: skip


def _items():
    return Item.objects.prefetch_related(
        Prefetch("item_tags", queryset=ItemTag.objects.select_related("tag").order_by("tag__path"))
    ).order_by("title", "pk")


class ItemList(generics.ListAPIView):
    """Items, filterable by ``q`` (title contains) and ``kind``."""

    serializer_class = ItemSerializer

    def get_queryset(self):
        items = _items()
        if q := self.request.query_params.get("q"):
            items = items.filter(title__icontains=q)
        if kind := self.request.query_params.get("kind"):
            items = items.filter(kind=kind)
        return items


class ItemDetail(generics.RetrieveAPIView):
    """One item by its external id."""

    serializer_class = ItemSerializer
    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return _items()
