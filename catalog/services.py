"""Catalog services: taxonomy reads shared by pages and the API."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count

from .models import Item, ItemTag, Tag


@dataclass(frozen=True)
class TagNode:
    tag: Tag
    items: int  # items tagged with this tag itself
    children: list[TagNode]


def taxonomy_tree() -> list[TagNode]:
    """The whole taxonomy as nested nodes with per-tag item counts, in two queries."""
    counts = dict(ItemTag.objects.values_list("tag_id").annotate(n=Count("id")).values_list("tag_id", "n"))
    tags = list(Tag.objects.get_tree())  # depth-first, in path order
    children: dict[str, list[TagNode]] = defaultdict(list)
    # Walk deepest first so each node's children are complete when it is built.
    nodes: dict[str, TagNode] = {}
    for tag in sorted(tags, key=lambda t: -t.depth):
        node = TagNode(tag=tag, items=counts.get(tag.pk, 0), children=children.pop(tag.path, []))
        nodes[tag.path] = node
        if tag.depth > 1:
            children[tag.path[: -tag.steplen]].append(node)
    for kids in [n.children for n in nodes.values()]:
        kids.sort(key=lambda n: n.tag.path)
    return [nodes[t.path] for t in tags if t.depth == 1]


def item_tags_by_facet(*, item: Item) -> list[tuple[Tag, list[ItemTag]]]:
    """An item's tags grouped under their facet, facets in taxonomy order."""
    item_tags = list(item.item_tags.select_related("tag", "created_by").order_by("tag__path"))
    steplen = Tag.steplen
    facet_paths = {it.tag.path[:steplen] for it in item_tags}
    facets = {f.path: f for f in Tag.objects.filter(path__in=facet_paths)}
    grouped: dict[str, list[ItemTag]] = defaultdict(list)
    for it in item_tags:
        grouped[it.tag.path[:steplen]].append(it)
    return [(facets[p], grouped[p]) for p in sorted(grouped)]
