from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render

from . import services
from .models import Item, Tag


@permission_required("catalog.view_item", raise_exception=True)
def item_list(request):
    items = Item.objects.annotate(tag_count=Count("item_tags")).order_by("title", "pk")
    query = request.GET.get("q", "").strip()
    if query:
        items = items.filter(Q(title__icontains=query) | Q(external_id__iexact=query))
    kind = request.GET.get("kind", "")
    if kind:
        items = items.filter(kind=kind)
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    kinds = Item.objects.order_by("kind").values_list("kind", flat=True).distinct()
    return render(request, "catalog/item_list.html", {"page": page, "q": query, "kind": kind, "kinds": kinds})


@permission_required("catalog.view_item", raise_exception=True)
def item_detail(request, pk: int):
    item = get_object_or_404(Item, pk=pk)
    return render(
        request, "catalog/item_detail.html", {"item": item, "facets": services.item_tags_by_facet(item=item)}
    )


@permission_required("catalog.view_tag", raise_exception=True)
def taxonomy(request):
    return render(request, "catalog/taxonomy.html", {"tree": services.taxonomy_tree()})


@permission_required("catalog.view_tag", raise_exception=True)
def tag_detail(request, pk: int):
    tag = get_object_or_404(Tag, pk=pk)
    items = Item.objects.filter(item_tags__tag__path__startswith=tag.path).distinct().order_by("title")
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "catalog/tag_detail.html",
        {"tag": tag, "ancestors": tag.get_ancestors(), "children": tag.get_children(), "page": page},
    )
