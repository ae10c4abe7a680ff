"""Catalog REST API: items, the taxonomy tree, item tags and tag suggestions.

Editors and admins write; every other role with catalog access reads. Errors follow
``recsite.api``: ``{"error", "field", "details"}``.
"""

from django.db.models import Prefetch, Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from recsite.api import error_response
from recsite.permissions import has_perms

from . import services
from .models import Item, ItemTag, Tag, TagSuggestion

ITEM_EXAMPLE = {
    "id": 12,
    "external_id": "m00012",
    "title": "Steel Titans",
    "description": "Pilots of giant robots defend the last city.",
    "kind": "movie",
    "release_date": "2019-05-01",
    "image_url": "",
    "metadata": {},
    "active": True,
    "tags": [{"path": "genre/anime/mecha", "name": "Mecha", "source": "editor", "confidence": None}],
    "created_at": "2026-11-30T05:00:00Z",
    "updated_at": "2026-11-30T05:00:00Z",
}
ERROR_EXAMPLE = OpenApiExample(
    "Error naming the field",
    value={"error": "tag: Unknown tag path 'genre/nope'.", "field": "tag", "details": {}},
    response_only=True,
    status_codes=["400"],
)


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
        read_only_fields = ["id", "tags", "created_at", "updated_at"]

    def validate_metadata(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class ItemUpdateSerializer(ItemSerializer):
    class Meta(ItemSerializer.Meta):
        read_only_fields = [*ItemSerializer.Meta.read_only_fields, "external_id"]


def _items():
    # Three queries for a page: the count, the items, their tags with the tag rows joined.
    return Item.objects.prefetch_related(
        Prefetch("item_tags", queryset=ItemTag.objects.select_related("tag").order_by("tag__path"))
    ).order_by("title", "pk")


class ItemFilter(serializers.Serializer):
    q = serializers.CharField(required=False, help_text="Text in the title or description.")
    kind = serializers.SlugField(required=False)
    tag = serializers.CharField(
        required=False, help_text="Tag path (genre/anime or Genre > Anime); includes tags below."
    )
    facet = serializers.SlugField(required=False, help_text="Facet slug: items with any tag in it.")
    active = serializers.BooleanField(required=False, allow_null=True, default=None)

    def validate_tag(self, value):
        tag = services.tag_resolve(path=value)
        if tag is None:
            raise serializers.ValidationError(f"Unknown tag path {value!r}.")
        return tag

    def validate_facet(self, value):
        facet = Tag.objects.filter(depth=1, slug=value).first()
        if facet is None:
            raise serializers.ValidationError(f"Unknown facet {value!r}.")
        return facet


@extend_schema_view(
    get=extend_schema(
        summary="List items",
        parameters=[ItemFilter],
        description=(
            "Paginated (``?page=``), filterable by text, kind, tag path (with its subtree), facet, active."
        ),
        examples=[
            OpenApiExample(
                "A page of items",
                value={"count": 1, "next": None, "previous": None, "results": [ITEM_EXAMPLE]},
                response_only=True,
            ),
            ERROR_EXAMPLE,
        ],
    ),
    post=extend_schema(
        summary="Create an item",
        examples=[
            OpenApiExample(
                "New item",
                value={
                    "external_id": "m00012",
                    "title": "Steel Titans",
                    "description": "Giant robots.",
                    "kind": "movie",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Duplicate id",
                value={
                    "error": "external_id: item with this external id already exists.",
                    "field": "external_id",
                    "details": {},
                },
                response_only=True,
                status_codes=["400"],
            ),
        ],
    ),
)
class ItemList(generics.ListCreateAPIView):
    serializer_class = ItemSerializer
    queryset = Item.objects.none()  # for RoleModelPermissions; get_queryset filters

    def get_queryset(self):
        items = _items()
        if self.request.method != "GET":
            return items
        query = ItemFilter(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        f = query.validated_data
        if q := f.get("q"):
            items = items.filter(Q(title__icontains=q) | Q(description__icontains=q))
        if kind := f.get("kind"):
            items = items.filter(kind=kind)
        if f.get("active") is not None:
            items = items.filter(active=f["active"])
        for tag in (f.get("tag"), f.get("facet")):
            if tag is not None:
                items = items.filter(
                    pk__in=ItemTag.objects.filter(tag__path__startswith=tag.path).values("item_id")
                )
        return items


@extend_schema_view(
    get=extend_schema(
        summary="One item by external id", examples=[OpenApiExample("Item", value=ITEM_EXAMPLE)]
    ),
    put=extend_schema(summary="Replace an item's fields"),
    patch=extend_schema(
        summary="Update some of an item's fields",
        examples=[
            OpenApiExample("Retitle", value={"title": "Steel Titans (director's cut)"}, request_only=True)
        ],
    ),
)
class ItemDetail(generics.RetrieveUpdateAPIView):
    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"
    queryset = Item.objects.all()

    def get_queryset(self):
        return _items()

    def get_serializer_class(self):
        return ItemSerializer if self.request.method == "GET" else ItemUpdateSerializer


class ItemDeactivate(APIView):
    permission_classes = [has_perms("catalog.change_item")]

    @extend_schema(
        request=None,
        responses={200: ItemSerializer},
        summary="Deactivate an item",
        description="Inactive items keep their tags and history but are no longer recommended or queued.",
        examples=[OpenApiExample("Deactivated", value={**ITEM_EXAMPLE, "active": False}, response_only=True)],
    )
    def post(self, request, external_id: str):
        item = generics.get_object_or_404(Item, external_id=external_id)
        Item.objects.filter(pk=item.pk).update(active=False)
        return Response(ItemSerializer(_items().get(pk=item.pk)).data)


class TagNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="tag.pk")
    name = serializers.CharField(source="tag.name")
    path = serializers.CharField(source="tag.slug_path")
    description = serializers.CharField(source="tag.description")
    retired = serializers.BooleanField(source="tag.retired")
    items = serializers.IntegerField()
    children = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ListField(child=serializers.DictField(), help_text="Nested tag nodes."))
    def get_children(self, node) -> list[dict]:
        return TagNodeSerializer(node.children, many=True).data


class Taxonomy(APIView):
    permission_classes = [has_perms("catalog.view_tag")]

    @extend_schema(
        responses={200: TagNodeSerializer(many=True)},
        summary="The taxonomy tree",
        description="Facets with their nested tags and the number of items carrying each tag.",
        examples=[
            OpenApiExample(
                "Tree",
                value=[
                    {
                        "id": 1,
                        "name": "Genre",
                        "path": "genre",
                        "description": "",
                        "retired": False,
                        "items": 0,
                        "children": [
                            {
                                "id": 2,
                                "name": "Anime",
                                "path": "genre/anime",
                                "description": "",
                                "retired": False,
                                "items": 4,
                                "children": [],
                            }
                        ],
                    },
                ],
            )
        ],
    )
    def get(self, request):
        return Response(TagNodeSerializer(services.taxonomy_tree(), many=True).data)


class ItemTagInput(serializers.Serializer):
    tag = serializers.CharField(
        max_length=700, help_text="Tag path: genre/anime/mecha or Genre > Anime > Mecha."
    )

    def validate_tag(self, value):
        tag = services.tag_resolve(path=value)
        if tag is None:
            raise serializers.ValidationError(f"Unknown tag path {value!r}.")
        return tag


class ItemTags(APIView):
    permission_classes = [has_perms("catalog.add_itemtag", "catalog.delete_itemtag")]

    @extend_schema(
        request=ItemTagInput,
        responses={201: ItemSerializer, 200: ItemSerializer},
        summary="Tag an item",
        description=(
            "Idempotent: 201 when the tag was added, 200 when the item already had it. "
            'Recorded in the item\'s history with source "api".'
        ),
        examples=[
            OpenApiExample("Add", value={"tag": "genre/anime/mecha"}, request_only=True),
            ERROR_EXAMPLE,
        ],
    )
    def post(self, request, external_id: str):
        item = generics.get_object_or_404(Item, external_id=external_id)
        data = ItemTagInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            _, created = services.item_tag_add(
                item=item, tag=data.validated_data["tag"], user=request.user, source=ItemTag.Source.API
            )
        except services.CatalogError as exc:
            return error_response(str(exc), field="tag")
        body = ItemSerializer(_items().get(pk=item.pk)).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ItemTagDelete(APIView):
    permission_classes = [has_perms("catalog.delete_itemtag")]

    @extend_schema(
        request=None,
        responses={200: ItemSerializer},
        summary="Untag an item",
        parameters=[
            OpenApiParameter("tag_path", OpenApiTypes.STR, OpenApiParameter.PATH, description="genre/anime")
        ],
        description="404 when the item does not carry the tag.",
    )
    def delete(self, request, external_id: str, tag_path: str):
        item = generics.get_object_or_404(Item, external_id=external_id)
        tag = services.tag_resolve(path=tag_path)
        if tag is None:
            return error_response(f"Unknown tag path {tag_path!r}.", field="tag", status_code=404)
        if not services.item_tag_remove(item=item, tag=tag, user=request.user, source=ItemTag.Source.API):
            return error_response(
                f"{item.external_id} is not tagged {tag.slug_path}.", field="tag", status_code=404
            )
        return Response(ItemSerializer(_items().get(pk=item.pk)).data)


class SuggestionSerializer(serializers.ModelSerializer):
    item = serializers.CharField(source="item.external_id")
    tag = serializers.CharField(source="tag.slug_path")
    tag_name = serializers.CharField(source="tag.name")

    class Meta:
        model = TagSuggestion
        fields = ["id", "item", "tag", "tag_name", "confidence", "status", "created_at", "decided_at"]


SUGGESTION_EXAMPLE = {
    "id": 7, "item": "m00012", "tag": "mood/uplifting", "tag_name": "Uplifting", "confidence": 0.82,
    "status": "pending", "created_at": "2026-11-30T05:00:00Z", "decided_at": None,
}  # fmt: skip


class SuggestionFilter(serializers.Serializer):
    item = serializers.CharField(required=False, help_text="External id of the item.")
    status = serializers.ChoiceField(choices=TagSuggestion.Status.choices, required=False, default="pending")


@extend_schema_view(
    get=extend_schema(
        summary="List tag suggestions",
        parameters=[SuggestionFilter],
        description=(
            "Pending suggestions by default, best first. "
            "Rejected ones are kept so they are never proposed again for the same item."
        ),
        examples=[
            OpenApiExample(
                "Pending",
                value={"count": 1, "next": None, "previous": None, "results": [SUGGESTION_EXAMPLE]},
                response_only=True,
            )
        ],
    )
)
class SuggestionList(generics.ListAPIView):
    serializer_class = SuggestionSerializer
    permission_classes = [has_perms("catalog.view_tagsuggestion")]

    def get_queryset(self):
        query = SuggestionFilter(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        suggestions = TagSuggestion.objects.select_related("item", "tag").filter(
            status=query.validated_data["status"]
        )
        if item := query.validated_data.get("item"):
            suggestions = suggestions.filter(item__external_id=item)
        return suggestions.order_by("-confidence", "pk")


class SuggestionDecide(APIView):
    permission_classes = [has_perms("catalog.add_itemtag")]
    decision = "accept"

    def post(self, request, pk: int):
        suggestion = generics.get_object_or_404(TagSuggestion.objects.select_related("item", "tag"), pk=pk)
        try:
            if self.decision == "accept":
                services.suggestion_accept(suggestion=suggestion, user=request.user)
            else:
                services.suggestion_reject(suggestion=suggestion, user=request.user)
        except services.CatalogError as exc:
            return error_response(str(exc), field="suggestion", status_code=status.HTTP_409_CONFLICT)
        suggestion.refresh_from_db()
        return Response(SuggestionSerializer(suggestion).data)


class SuggestionAccept(SuggestionDecide):
    decision = "accept"

    @extend_schema(
        request=None,
        responses={200: SuggestionSerializer},
        summary="Accept a suggestion",
        description='Tags the item (source "suggestion", with the confidence). 409 when already decided.',
        examples=[
            OpenApiExample("Accepted", value={**SUGGESTION_EXAMPLE, "status": "accepted"}, response_only=True)
        ],
    )
    def post(self, request, pk: int):
        return super().post(request, pk)


class SuggestionReject(SuggestionDecide):
    decision = "reject"

    @extend_schema(
        request=None,
        responses={200: SuggestionSerializer},
        summary="Reject a suggestion",
        description="Never proposed again for this item; used as a negative at the next training.",
        examples=[
            OpenApiExample("Rejected", value={**SUGGESTION_EXAMPLE, "status": "rejected"}, response_only=True)
        ],
    )
    def post(self, request, pk: int):
        return super().post(request, pk)
