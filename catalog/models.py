from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.text import slugify
from treebeard.mp_tree import MP_Node


class Item(models.Model):
    """A piece of content or a product, identified by the customer's external id."""

    external_id = models.CharField(max_length=200, unique=True)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    kind = models.SlugField(max_length=50, default="movie", help_text="movie, series, product...")
    release_date = models.DateField(null=True, blank=True)
    image_url = models.URLField(max_length=1000, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "pk"]
        indexes = [
            # The editors' queue and "new in..." rows: recently added active items.
            models.Index(fields=["active", "-created_at"], name="item_active_created_idx"),
            # Item lists filtered by kind.
            models.Index(fields=["kind", "title"], name="item_kind_title_idx"),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("catalog:item_detail", args=[self.pk])

    @property
    def year(self) -> int | None:
        return self.release_date.year if self.release_date else None


class Tag(MP_Node):
    """A node of the taxonomy. Depth-1 nodes are facets ("Genre"); tags nest below them.

    ``slug_path`` ("genre/anime/mecha") is unique, which makes slugs unique per parent
    and gives imports a direct lookup by path.
    """

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, allow_unicode=True)
    slug_path = models.CharField(max_length=700, unique=True, editable=False)
    description = models.TextField(blank=True)
    retired = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    node_order_by = ["name"]

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~models.Q(slug=""), name="tag_slug_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # treebeard sets path/depth before saving; derive the slug path from the parent's.
        if not self.slug:
            self.slug = slugify(self.name, allow_unicode=True)
        if self.depth and self.depth > 1:
            parent_path = Tag.objects.filter(path=self.path[: -self.steplen]).values_list(
                "slug_path", flat=True
            )
            self.slug_path = f"{parent_path.get()}/{self.slug}"
        else:
            self.slug_path = self.slug
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "slug", "slug_path"}
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("catalog:tag_detail", args=[self.pk])

    @property
    def is_facet(self) -> bool:
        return self.depth == 1

    @property
    def facet_path(self) -> str:
        """Materialised path of this tag's facet (its root)."""
        return self.path[: self.steplen]

    def label(self) -> str:
        """Human-readable path: "Genre > Anime > Mecha"."""
        names = [t.name for t in self.get_ancestors()] + [self.name]
        return " > ".join(names)


class ItemTag(models.Model):
    """One tag on one item, with its provenance."""

    class Source(models.TextChoices):
        EDITOR = "editor", "Editor"
        IMPORT = "import", "Import"
        SUGGESTION = "suggestion", "Suggestion accepted"
        API = "api", "API"
        DEMO = "demo", "Demo data"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="item_tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="item_tags")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.EDITOR)
    confidence = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "tag"], name="itemtag_unique_item_tag"),
            models.CheckConstraint(
                condition=models.Q(confidence__isnull=True) | models.Q(confidence__gte=0, confidence__lte=1),
                name="itemtag_confidence_0_1",
            ),
        ]
        indexes = [
            # Items carrying a tag (tag pages, usage counts, taxonomy filters).
            models.Index(fields=["tag", "item"], name="itemtag_tag_item_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.item} · {self.tag}"
