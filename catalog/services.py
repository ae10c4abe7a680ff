"""Catalog services: the taxonomy, tagging, the editors' queue and tag suggestions.

Views, API views, commands and tasks call these; they hold the business rules. Imports and
exports live in ``catalog/imports.py`` (the same layer, split by sub-domain).
"""

from __future__ import annotations

import logging
import traceback
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from recsite import outbox

from . import suggestions as ml
from .models import Item, ItemTag, ItemTagChange, Tag, TagAlias, TagSuggestion, TagSuggestionModel

logger = logging.getLogger(__name__)

Source = ItemTag.Source
FORBIDDEN_IN_NAMES = (">", "|")  # the path and list separators of imports


class CatalogError(Exception):
    """A catalog operation was refused; the message is for people, ``field`` names the input."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class StaleEdit(CatalogError):
    """Someone else changed the tag since the form was opened (optimistic concurrency)."""


class TagInUse(CatalogError):
    """Deleting the tag would untag items: it needs a merge target or an explicit confirmation."""

    def __init__(self, message: str, *, affected: list[ItemTag]):
        super().__init__(message, field="confirm")
        self.affected = affected


# --- Reads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagNode:
    tag: Tag
    items: int  # items tagged with this tag itself
    children: list[TagNode]

    @property
    def total(self) -> int:
        """Tag applications in this subtree (the tag and everything below it)."""
        return self.items + sum(c.total for c in self.children)


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


def tag_labels() -> dict[int, str]:
    """Every tag's human path ("Genre > Anime > Mecha") by id, in one query."""
    names_by_path: dict[str, str] = {}
    labels: dict[int, str] = {}
    for pk, path, name in Tag.objects.order_by("path").values_list("pk", "path", "name"):
        parent = names_by_path.get(path[: -Tag.steplen]) if len(path) > Tag.steplen else None
        label = f"{parent} > {name}" if parent else name
        names_by_path[path] = label
        labels[pk] = label
    return labels


def tag_choices(*, include_facets: bool = False, include_retired: bool = False) -> list[dict]:
    """Tags for pickers: id, label, slug path, in taxonomy order."""
    labels = tag_labels()
    tags = Tag.objects.order_by("path")
    if not include_facets:
        tags = tags.filter(depth__gt=1)
    if not include_retired:
        tags = tags.filter(retired=False)
    return [{"id": pk, "label": labels[pk], "path": sp_} for pk, sp_ in tags.values_list("pk", "slug_path")]


def path_slug(label: str) -> str:
    """ "Genre > Anime > Mecha" or "genre/anime/mecha" -> "genre/anime/mecha"."""
    parts = label.split(">") if ">" in label else label.split("/")
    return "/".join(slugify(p.strip(), allow_unicode=True) for p in parts)


def path_parts(label: str) -> list[str]:
    """The names along a human path, whitespace collapsed."""
    parts = label.split(">") if ">" in label else label.split("/")
    return [" ".join(p.split()) for p in parts]


def tag_resolve(*, path: str) -> Tag | None:
    """A tag by its human path, slug path or an alias path; None when unknown."""
    slug_path = path_slug(path)
    tag = Tag.objects.filter(slug_path=slug_path).first()
    if tag is None:
        alias = TagAlias.objects.select_related("tag").filter(slug_path=slug_path).first()
        tag = alias.tag if alias else None
    return tag


def tag_usage(*, tag: Tag) -> int:
    """Items carrying the tag or one below it."""
    return ItemTag.objects.filter(tag__path__startswith=tag.path).values("item_id").distinct().count()


# --- Taxonomy edits ------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise CatalogError("Give the tag a name.", field="name")
    if any(c in name for c in FORBIDDEN_IN_NAMES):
        raise CatalogError(
            "Tag names cannot contain “>” or “|” (they separate paths in imports).", field="name"
        )
    if not slugify(name, allow_unicode=True):
        raise CatalogError("The name needs at least one letter or digit.", field="name")
    if len(name) > 100:
        raise CatalogError("Keep tag names under 100 characters.", field="name")
    return name


def _child_slug_path(parent: Tag | None, slug: str) -> str:
    return f"{parent.slug_path}/{slug}" if parent else slug


@transaction.atomic
def tag_create(*, name: str, parent: Tag | None = None, description: str = "") -> Tag:
    """A new facet (no parent) or tag below ``parent``. Slugs are unique per parent."""
    name = _clean_name(name)
    slug = slugify(name, allow_unicode=True)
    if parent is not None:
        parent = Tag.objects.get(pk=parent.pk)  # fresh path and numchild
    if Tag.objects.filter(slug_path=_child_slug_path(parent, slug)).exists():
        where = f"under {parent.name}" if parent else "as a facet"
        raise CatalogError(f"A tag called {name} already exists {where}.", field="name")
    fields = {"name": name, "slug": slug, "description": description or ""}
    tag = Tag.objects.add_child(parent, fields) if parent else Tag.objects.add_root(fields)
    TagAlias.objects.filter(slug_path=tag.slug_path).delete()  # a real tag wins over an old alias
    return tag


def _claim(tag: Tag, version: int | None) -> None:
    """Compare-and-set on the version: the edit proceeds only if nobody changed the tag since."""
    expected = tag.version if version is None else version
    if not Tag.objects.filter(pk=tag.pk, version=expected).update(version=expected + 1):
        raise StaleEdit(
            f"{tag.name} was changed by someone else since you opened it. Reload the page and try again.",
            field="version",
        )


def _rewrite_subtree_paths(*, tag: Tag, old_slug_path: str) -> None:
    """After a rename or move, give the tag and everything below it its new slug path, and keep
    each old path as an alias so later imports still resolve."""
    tag = Tag.objects.get(pk=tag.pk)
    parent_path = tag.path[: -Tag.steplen]
    parent_slug = Tag.objects.get(path=parent_path).slug_path if parent_path else None
    new_slug_path = _child_slug_path(Tag(slug_path=parent_slug) if parent_slug else None, tag.slug)
    if new_slug_path == old_slug_path:
        return
    subtree = list(Tag.objects.filter(path__startswith=tag.path))
    aliases = []
    for node in subtree:
        aliases.append(TagAlias(slug_path=node.slug_path, tag_id=node.pk))
        node.slug_path = new_slug_path + node.slug_path[len(old_slug_path) :]
    # Two passes through a temporary value: the unique index must hold after every row.
    for node in subtree:
        Tag.objects.filter(pk=node.pk).update(slug_path=f"~moving~{node.pk}")
    for node in subtree:
        Tag.objects.filter(pk=node.pk).update(slug_path=node.slug_path)
    TagAlias.objects.filter(slug_path__in=[n.slug_path for n in subtree]).delete()
    TagAlias.objects.bulk_create(aliases, ignore_conflicts=True)


@transaction.atomic
def tag_update(*, tag: Tag, version: int | None, name: str, description: str | None = None) -> Tag:
    """Rename (the slug follows the name) and/or describe a tag. Refuses a stale edit."""
    name = _clean_name(name)
    slug = slugify(name, allow_unicode=True)
    parent = Tag.objects.get_parent(tag)
    if slug != tag.slug and Tag.objects.filter(slug_path=_child_slug_path(parent, slug)).exists():
        raise CatalogError(f"A tag called {name} already exists there.", field="name")
    _claim(tag, version)
    old_slug_path = tag.slug_path
    fields = {"name": name, "slug": slug}
    if description is not None:
        fields["description"] = description
    Tag.objects.filter(pk=tag.pk).update(**fields)
    _rewrite_subtree_paths(tag=tag, old_slug_path=old_slug_path)
    return Tag.objects.get(pk=tag.pk)


@transaction.atomic
def tag_move(*, tag: Tag, parent: Tag | None, version: int | None = None) -> Tag:
    """Re-parent a tag (None makes it a facet). Refuses cycles and sibling name clashes."""
    tag = Tag.objects.get(pk=tag.pk)  # fresh path: earlier moves may have shifted it
    if parent is not None:
        parent = Tag.objects.get(pk=parent.pk)
        if parent.pk == tag.pk or parent.path.startswith(tag.path):
            raise CatalogError(f"{tag.name} cannot move below itself or one of its own tags.", field="parent")
    current_parent_path = tag.path[: -Tag.steplen]
    if (parent.path if parent else "") == current_parent_path:
        return tag
    if Tag.objects.filter(slug_path=_child_slug_path(parent, tag.slug)).exists():
        where = f"under {parent.name}" if parent else "at the top level"
        raise CatalogError(f"A tag called {tag.name} already exists {where}.", field="parent")
    _claim(tag, version if version is not None else tag.version)
    old_slug_path = tag.slug_path
    node = Tag.objects.get(pk=tag.pk)
    if parent is None:
        Tag.objects.move(node, Tag.objects.get_root_nodes().first(), "sorted-sibling")
    else:
        Tag.objects.move(node, parent, "sorted-child")
    _rewrite_subtree_paths(tag=node, old_slug_path=old_slug_path)
    return Tag.objects.get(pk=tag.pk)


@transaction.atomic
def tag_retire(*, tag: Tag, retired: bool = True, version: int | None = None) -> Tag:
    """Retired tags stay on items but are no longer offered to editors or suggested."""
    _claim(tag, version)
    Tag.objects.filter(pk=tag.pk).update(retired=retired)
    return Tag.objects.get(pk=tag.pk)


def _record(
    rows: Iterable[tuple[int, int, str]],
    *,
    action: str,
    source: str,
    user: AbstractBaseUser | None,
    labels: dict[int, str] | None = None,
    confidence: float | None = None,
) -> int:
    """History rows for (item id, tag id, label) triples."""
    user_id = user.pk if user is not None and user.is_authenticated else None
    changes = [
        ItemTagChange(
            item_id=item_id, tag_id=tag_id, tag_label=label, action=action, source=source,
            user_id=user_id, confidence=confidence,
        )
        for item_id, tag_id, label in rows
    ]  # fmt: skip
    ItemTagChange.objects.bulk_create(changes, batch_size=2000)
    return len(changes)


@transaction.atomic
def tag_merge(*, source: Tag, target: Tag, user: AbstractBaseUser | None = None) -> Tag:
    """Fold ``source`` into ``target``: item tags move without duplicates, children move under
    the target, and the source's path (and its aliases) become aliases of the target."""
    source = Tag.objects.get(pk=source.pk)
    target = Tag.objects.get(pk=target.pk)
    if source.pk == target.pk:
        raise CatalogError("Choose a different tag to merge into.", field="target")
    if target.path.startswith(source.path):
        raise CatalogError(
            f"{target.name} is below {source.name}; merge the other way round.", field="target"
        )
    if source.is_facet:
        raise CatalogError("Facets cannot be merged; move or delete their tags instead.", field="target")
    clashes = sorted(
        set(Tag.objects.get_children(source).values_list("slug", flat=True))
        & set(Tag.objects.get_children(target).values_list("slug", flat=True))
    )
    if clashes:
        raise CatalogError(
            f"Both tags have children called {', '.join(clashes)}; merge those first.", field="target"
        )
    for child in list(Tag.objects.get_children(source)):
        tag_move(tag=child, parent=target)
    labels = tag_labels()
    source_items = set(ItemTag.objects.filter(tag=source).values_list("item_id", flat=True))
    target_items = set(ItemTag.objects.filter(tag=target).values_list("item_id", flat=True))
    moved = source_items - target_items
    ItemTag.objects.filter(tag=source, item_id__in=moved).update(tag=target)
    ItemTag.objects.filter(tag=source).delete()
    _record(
        ((i, source.pk, labels[source.pk]) for i in source_items),
        action="remove",
        source=Source.EDITOR,
        user=user,
    )
    _record(((i, target.pk, labels[target.pk]) for i in moved), action="add", source=Source.EDITOR, user=user)
    # Suggestions of the source for items that already have (or had) the target are dropped.
    TagSuggestion.objects.filter(tag=source).exclude(
        item_id__in=TagSuggestion.objects.filter(tag=target).values("item_id")
    ).exclude(item_id__in=target_items).update(tag=target)
    TagAlias.objects.filter(tag=source).update(tag=target)
    old_slug_path = source.slug_path
    Tag.objects.get(pk=source.pk).delete()
    TagAlias.objects.update_or_create(slug_path=old_slug_path, defaults={"tag": target})
    Tag.objects.filter(pk=target.pk).update(version=target.version + 1)
    return Tag.objects.get(pk=target.pk)


def tag_delete_impact(*, tag: Tag) -> list[ItemTag]:
    """The item tags that deleting ``tag`` (and the tags below it) would remove."""
    return list(
        ItemTag.objects.filter(tag__path__startswith=tag.path)
        .select_related("item", "tag")
        .order_by("item__title", "tag__path")
    )


@transaction.atomic
def tag_delete(
    *,
    tag: Tag,
    merge_into: Tag | None = None,
    confirm: bool = False,
    user: AbstractBaseUser | None = None,
) -> int:
    """Delete a tag and its subtree. A tag in use needs a merge target or ``confirm=True``
    (after showing :func:`tag_delete_impact`). Returns the number of item tags removed."""
    tag = Tag.objects.get(pk=tag.pk)
    if merge_into is not None:
        tag_merge(source=tag, target=merge_into, user=user)
        return 0
    affected = tag_delete_impact(tag=tag)
    if affected and not confirm:
        raise TagInUse(
            f"{tag.name} is on {len(affected)} item tag(s). Merge it into another tag, or confirm "
            "that these items lose it.",
            affected=affected,
        )
    labels = tag_labels()
    _record(((it.item_id, it.tag_id, labels[it.tag_id]) for it in affected), action="remove",
            source=Source.EDITOR, user=user)  # fmt: skip
    tag.delete()
    return len(affected)


# --- Tagging -------------------------------------------------------------------------------


def _touch(item_ids: Iterable[int]) -> None:
    """Tag changes count as changes of the item (the "recently changed" queue)."""
    Item.objects.filter(pk__in=list(item_ids)).update(updated_at=timezone.now())


def _taggable(tag: Tag) -> None:
    if tag.retired:
        raise CatalogError(f"{tag.name} is retired; choose another tag.", field="tag")
    if tag.is_facet:
        raise CatalogError(f"{tag.name} is a facet; choose a tag inside it.", field="tag")


@transaction.atomic
def item_tag_add(
    *,
    item: Item,
    tag: Tag,
    user: AbstractBaseUser | None = None,
    source: str = Source.EDITOR,
    confidence: float | None = None,
) -> tuple[ItemTag, bool]:
    """Tag an item (idempotent). Returns the item tag and whether it was created."""
    _taggable(tag)
    existing = ItemTag.objects.filter(item=item, tag=tag).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            item_tag = ItemTag.objects.create(
                item=item, tag=tag, source=source, confidence=confidence,
                created_by=user if user is not None and user.is_authenticated else None,
            )  # fmt: skip
    except IntegrityError:  # a concurrent add won
        return ItemTag.objects.get(item=item, tag=tag), False
    _record([(item.pk, tag.pk, tag.label())], action="add", source=source, user=user, confidence=confidence)
    if source != Source.SUGGESTION:
        # Tagging by hand what the model proposed counts as accepting it.
        TagSuggestion.objects.filter(item=item, tag=tag, status=TagSuggestion.Status.PENDING).update(
            status=TagSuggestion.Status.ACCEPTED, decided_at=timezone.now(),
            decided_by=user if user is not None and user.is_authenticated else None,
        )  # fmt: skip
    _touch([item.pk])
    return item_tag, True


@transaction.atomic
def item_tag_remove(
    *, item: Item, tag: Tag, user: AbstractBaseUser | None = None, source: str = Source.EDITOR
) -> bool:
    """Untag an item; False when it did not carry the tag."""
    deleted, _ = ItemTag.objects.filter(item=item, tag=tag).delete()
    if not deleted:
        return False
    _record([(item.pk, tag.pk, tag.label())], action="remove", source=source, user=user)
    _touch([item.pk])
    return True


@transaction.atomic
def items_tag_bulk(
    *, item_ids: Sequence[int], tag: Tag, action: str, user: AbstractBaseUser | None = None
) -> int:
    """Add or remove one tag on many items; returns how many items changed."""
    if action not in ("add", "remove"):
        raise CatalogError("Choose add or remove.", field="action")
    item_ids = list(Item.objects.filter(pk__in=list(item_ids)).values_list("pk", flat=True))
    label = tag.label()
    tagged = set(ItemTag.objects.filter(tag=tag, item_id__in=item_ids).values_list("item_id", flat=True))
    by = user if user is not None and user.is_authenticated else None
    if action == "add":
        _taggable(tag)
        changed = [i for i in item_ids if i not in tagged]
        ItemTag.objects.bulk_create(
            [ItemTag(item_id=i, tag=tag, source=Source.EDITOR, created_by=by) for i in changed],
            ignore_conflicts=True,
        )
    else:
        changed = [i for i in item_ids if i in tagged]
        ItemTag.objects.filter(tag=tag, item_id__in=changed).delete()
    _record(((i, tag.pk, label) for i in changed), action=action, source=Source.EDITOR, user=user)
    _touch(changed)
    return len(changed)


@transaction.atomic
def item_change_undo(*, item: Item, user: AbstractBaseUser) -> ItemTagChange | None:
    """Reverse the user's latest tag change on the item (an undo of an undo redoes it)."""
    last = ItemTagChange.objects.filter(item=item, user=user).select_related("tag").first()
    if last is None or last.tag is None:
        return None
    if last.action == ItemTagChange.Action.ADD:
        if item_tag_remove(item=item, tag=last.tag, user=user):
            return last
        return None
    if last.tag.retired:
        raise CatalogError(f"{last.tag.name} is retired; it cannot be put back.", field="tag")
    # Restoring a removed suggestion keeps its provenance.
    item_tag_add(item=item, tag=last.tag, user=user, source=last.source, confidence=last.confidence)
    return last


def item_history(*, item: Item, limit: int = 50) -> QuerySet[ItemTagChange]:
    return item.tag_changes.select_related("user")[:limit]


# --- The editors' queue ------------------------------------------------------------------------

QUEUES = {
    "attention": "Needs attention",
    "untagged": "Untagged",
    "thin": "Thinly tagged",
    "missing": "Missing a required facet",
    "recent": "Recently added or changed",
}


def _missing_facet_filter() -> Q:
    query = Q(pk__in=[])
    for facet in settings.CATALOG_REQUIRED_FACETS:
        query |= ~Exists(ItemTag.objects.filter(item=OuterRef("pk"), tag__slug_path__startswith=f"{facet}/"))
    return query


def item_queue(*, reason: str = "attention", recent_days: int = 7) -> QuerySet[Item]:
    """Active items needing an editor, annotated with ``tag_count``, in a stable order."""
    if reason not in QUEUES:
        raise CatalogError(f"Unknown queue {reason!r}.", field="queue")
    items = Item.objects.filter(active=True).annotate(tag_count=Count("item_tags"))
    if reason == "untagged":
        return items.filter(tag_count=0).order_by("pk")
    if reason == "thin":
        return items.filter(tag_count__gt=0, tag_count__lt=settings.CATALOG_MIN_TAGS).order_by("pk")
    if reason == "missing":
        return items.filter(_missing_facet_filter()).order_by("pk")
    if reason == "recent":
        since = timezone.now() - timedelta(days=recent_days)
        return items.filter(Q(created_at__gte=since) | Q(updated_at__gte=since)).order_by("pk")
    return items.filter(Q(tag_count__lt=settings.CATALOG_MIN_TAGS) | _missing_facet_filter()).order_by("pk")


def item_queue_next(*, item: Item, reason: str = "attention") -> Item | None:
    """The queue's next item after ``item`` (by id), wrapping to the start."""
    queue = item_queue(reason=reason).exclude(pk=item.pk)
    return queue.filter(pk__gt=item.pk).first() or queue.first()


def item_queue_counts() -> dict[str, int]:
    return {reason: item_queue(reason=reason).count() for reason in QUEUES}


# --- Suggestions ---------------------------------------------------------------------------

MIN_EXAMPLES = 3  # a tag needs this many tagged items before the model learns it
INTERACTION_TYPES = ("view", "play", "complete", "rate", "like", "add_to_list", "add_to_cart", "purchase")


def suggestion_model_latest() -> TagSuggestionModel | None:
    return (
        TagSuggestionModel.objects.filter(status=TagSuggestionModel.Status.SUCCEEDED)
        .order_by("-trained_at", "-pk")
        .first()
    )


def suggestion_model_unfinished() -> TagSuggestionModel | None:
    return TagSuggestionModel.objects.filter(
        status__in=[TagSuggestionModel.Status.QUEUED, TagSuggestionModel.Status.RUNNING]
    ).first()


def suggestion_model_request(*, user: AbstractBaseUser | None = None) -> TagSuggestionModel:
    """Queue a training (heavy queue, after commit). Refuses a second unfinished one."""
    from .tasks import suggestion_model_train

    try:
        with transaction.atomic():
            model = TagSuggestionModel.objects.create(
                requested_by=user if user is not None and user.is_authenticated else None,
                message="Waiting for a worker",
            )
    except IntegrityError:
        raise CatalogError("A suggestion model is already queued or training.", field="model") from None
    outbox.enqueue(suggestion_model_train, model.pk)
    return model


def _model_update(model_id: int, **fields) -> bool:
    return (
        TagSuggestionModel.objects.filter(pk=model_id, status=TagSuggestionModel.Status.RUNNING).update(
            **fields
        )
        == 1
    )


@dataclass
class SuggestionData:
    item_ids: np.ndarray
    texts: list[str]
    labels: list[list[int]]
    rejected: list[list[int]]
    tags: np.ndarray
    interactions: tuple[np.ndarray, np.ndarray] | None


def suggestion_data_load() -> SuggestionData:
    """Active items with their text, suggestible tags, rejections and interactions."""
    rows = list(Item.objects.filter(active=True).order_by("pk").values_list("pk", "title", "description"))
    item_ids = np.array([r[0] for r in rows], dtype=np.int64)
    index = {pk: n for n, pk in enumerate(item_ids.tolist())}
    texts = [f"{title}\n{description}" for _, title, description in rows]
    suggestible = set(Tag.objects.filter(depth__gt=1, retired=False).values_list("pk", flat=True))
    labels: list[list[int]] = [[] for _ in rows]
    for item_id, tag_id in (
        ItemTag.objects.filter(item__active=True).values_list("item_id", "tag_id").iterator(chunk_size=20_000)
    ):
        if tag_id in suggestible and item_id in index:
            labels[index[item_id]].append(tag_id)
    rejected: list[list[int]] = [[] for _ in rows]
    for item_id, tag_id in TagSuggestion.objects.filter(status=TagSuggestion.Status.REJECTED).values_list(
        "item_id", "tag_id"
    ):
        if item_id in index:
            rejected[index[item_id]].append(tag_id)
    counts: dict[int, int] = defaultdict(int)
    for tags_of in labels:
        for t in tags_of:
            counts[t] += 1
    tags = np.array(sorted(t for t, c in counts.items() if c >= MIN_EXAMPLES), dtype=np.int64)
    interactions = _interactions_load(index)
    return SuggestionData(item_ids, texts, labels, rejected, tags, interactions)


def _interactions_load(index: dict[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    from personalization.models import Event  # read-only: who consumed what

    pairs = list(
        Event.objects.filter(item__isnull=False, type__in=INTERACTION_TYPES)
        .values_list("item_id", "profile_id")
        .distinct()
        .iterator(chunk_size=50_000)
    )
    if not pairs:
        return None
    items = np.array([index.get(i, -1) for i, _ in pairs], dtype=np.int64)
    profiles_raw = np.array([p for _, p in pairs], dtype=np.int64)
    keep = items >= 0
    _, profiles = np.unique(profiles_raw[keep], return_inverse=True)
    return items[keep], profiles.astype(np.int64)


def suggestion_model_train(*, model_id: int) -> TagSuggestionModel:
    """Fit, evaluate on held-out items, store the artifact and refresh pending suggestions.
    Idempotent: a model row that is not queued is left alone."""
    now = timezone.now()
    taken = TagSuggestionModel.objects.filter(pk=model_id, status=TagSuggestionModel.Status.QUEUED).update(
        status=TagSuggestionModel.Status.RUNNING, started_at=now, progress=1, message="Loading items"
    )
    model = TagSuggestionModel.objects.get(pk=model_id)
    if not taken:
        return model
    try:
        _train(model_id)
    except Exception as exc:
        logger.exception("tag suggestion model %s failed", model_id)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        TagSuggestionModel.objects.filter(pk=model_id, status=TagSuggestionModel.Status.RUNNING).update(
            status=TagSuggestionModel.Status.FAILED, error=detail, message="Failed"
        )
    model.refresh_from_db()
    return model


def _train(model_id: int) -> None:
    data = suggestion_data_load()
    labelled = sum(1 for t in data.labels if t)
    if len(data.tags) == 0 or labelled < 10:
        raise CatalogError(
            f"Not enough tagged items to learn from ({labelled} tagged items; each tag needs "
            f"{MIN_EXAMPLES}). Tag some items first."
        )
    training = ml.train(
        data.texts, data.labels, data.rejected, data.tags, interactions=data.interactions,
        k=settings.CATALOG_SUGGESTIONS_PER_ITEM, exclude=_suggestion_exclusions(data),
        progress=lambda percent, message: _model_update(model_id, progress=percent, message=message),
    )  # fmt: skip
    _model_update(model_id, progress=90, message="Storing suggestions")
    created = _suggestions_store(model_id, data.item_ids, training.suggestions)
    TagSuggestionModel.objects.filter(pk=model_id, status=TagSuggestionModel.Status.RUNNING).update(
        status=TagSuggestionModel.Status.SUCCEEDED,
        progress=100,
        message=f"{created:,} suggestions for {len(data.texts):,} items",
        metrics={
            **training.metrics.as_dict(),
            "co_consumption": training.co_consumption,
            "suggestions": created,
        },
        artifact=training.model.dumps(),
        trained_at=timezone.now(),
    )


def _suggestion_exclusions(data: SuggestionData) -> sp.csr_matrix:
    """(item row, tag column) pairs never to suggest: tags carried and suggestions decided."""
    column = {int(t): c for c, t in enumerate(data.tags)}
    index = {int(pk): n for n, pk in enumerate(data.item_ids)}
    pairs = [(n, column.get(t, -1)) for n, tags_of in enumerate(data.labels) for t in tags_of]
    decided = TagSuggestion.objects.exclude(status=TagSuggestion.Status.PENDING).values_list(
        "item_id", "tag_id"
    )
    pairs += [(index[item_id], column.get(tag_id, -1)) for item_id, tag_id in decided if item_id in index]
    rows = np.array([r for r, c in pairs if c >= 0], dtype=np.int64)
    cols = np.array([c for _, c in pairs if c >= 0], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(data.texts), len(data.tags)))


def _suggestions_store(model_id: int, item_ids: np.ndarray, proposals: list[list[tuple[int, float]]]) -> int:
    """Replace pending suggestions; decided ones stay (so rejections are never proposed again)."""
    with transaction.atomic():
        TagSuggestion.objects.filter(status=TagSuggestion.Status.PENDING).delete()
        batch = [
            TagSuggestion(
                item_id=int(item_ids[n]), tag_id=tag_id, confidence=round(conf, 4), model_id=model_id
            )
            for n, pairs in enumerate(proposals)
            for tag_id, conf in pairs
        ]
        TagSuggestion.objects.bulk_create(batch, batch_size=5000, ignore_conflicts=True)
    return len(batch)


def item_suggestions(*, item: Item) -> list[TagSuggestion]:
    """Pending suggestions for an item, best first, skipping retired tags."""
    return list(
        item.suggestions.filter(status=TagSuggestion.Status.PENDING, tag__retired=False)
        .select_related("tag")
        .order_by("-confidence", "pk")
    )


def _decide(suggestion: TagSuggestion, status: str, user: AbstractBaseUser | None) -> bool:
    return bool(
        TagSuggestion.objects.filter(pk=suggestion.pk, status=TagSuggestion.Status.PENDING).update(
            status=status,
            decided_at=timezone.now(),
            decided_by=user if user is not None and user.is_authenticated else None,
        )
    )


@transaction.atomic
def suggestion_accept(*, suggestion: TagSuggestion, user: AbstractBaseUser | None = None) -> ItemTag:
    """Tag the item with the suggested tag (source "suggestion", with the confidence)."""
    if not _decide(suggestion, TagSuggestion.Status.ACCEPTED, user):
        raise CatalogError("This suggestion was already decided.", field="suggestion")
    item_tag, _ = item_tag_add(
        item=suggestion.item, tag=suggestion.tag, user=user, source=Source.SUGGESTION,
        confidence=suggestion.confidence,
    )  # fmt: skip
    return item_tag


@transaction.atomic
def suggestion_reject(*, suggestion: TagSuggestion, user: AbstractBaseUser | None = None) -> TagSuggestion:
    """Remember the rejection: never proposed again for this item, a negative at next training."""
    if not _decide(suggestion, TagSuggestion.Status.REJECTED, user):
        raise CatalogError("This suggestion was already decided.", field="suggestion")
    suggestion.refresh_from_db()
    return suggestion


def suggestions_accept_all(
    *, item: Item, user: AbstractBaseUser | None = None, min_confidence: float = 0.0
) -> int:
    """Accept every pending suggestion of an item at or above ``min_confidence``."""
    accepted = 0
    for suggestion in item_suggestions(item=item):
        if suggestion.confidence >= min_confidence:
            try:
                suggestion_accept(suggestion=suggestion, user=user)
                accepted += 1
            except CatalogError:
                continue
    return accepted


# --- Coverage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    active_items: int
    per_facet: list[tuple[str, int]]  # facet name, items with a tag in it
    missing: list[tuple[str, float]]  # required facet, share of active items without it
    rare: list[tuple[str, int]]  # tag label, items (fewest first)
    throughput: list[tuple]  # (day, editor, changes)


def catalog_coverage(*, rare_below: int = 3, rare_limit: int = 25, days: int = 30) -> Coverage:
    """Figures for the coverage dashboard, in a handful of aggregate queries."""
    from django.db.models.functions import Substr, TruncDate

    active = Item.objects.filter(active=True).count()
    steplen = Tag.steplen
    facets = list(Tag.objects.filter(depth=1).order_by("path").values_list("path", "name", "slug"))
    with_facet = dict(
        ItemTag.objects.filter(item__active=True)
        .annotate(facet=Substr("tag__path", 1, steplen))
        .values("facet")
        .annotate(n=Count("item_id", distinct=True))
        .values_list("facet", "n")
    )
    per_facet = [(name, with_facet.get(path, 0)) for path, name, _ in facets]
    by_slug = {slug: (path, name) for path, name, slug in facets}
    missing = []
    for slug in settings.CATALOG_REQUIRED_FACETS:
        path, name = by_slug.get(slug, (None, slug))
        have = with_facet.get(path, 0) if path else 0
        missing.append((name, (1 - have / active) if active else 0.0))
    labels = tag_labels()
    usage = (
        Tag.objects.filter(depth__gt=1, retired=False)
        .annotate(n=Count("item_tags"))
        .filter(n__lt=rare_below)
        .order_by("n", "path")
        .values_list("pk", "n")[:rare_limit]
    )
    rare = [(labels[pk], n) for pk, n in usage]
    since = timezone.now() - timedelta(days=days)
    rows = (
        ItemTagChange.objects.filter(created_at__gte=since, user__isnull=False)
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "user__username")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    return Coverage(active, per_facet, missing, rare, [tuple(r) for r in rows])
