from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.text import slugify
from treebeard.mp_tree import MP_Node

from recsite.locking import LockedDeleteMixin, LockedDeleteQuerySet


class Item(LockedDeleteMixin, models.Model):
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

    objects = LockedDeleteQuerySet.as_manager()

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
    # Optimistic concurrency: every edit is ``filter(pk=..., version=seen).update(version=seen + 1)``.
    version = models.PositiveIntegerField(default=1)
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
        names = [t.name for t in Tag.objects.get_ancestors(self)] + [self.name]
        return " > ".join(names)


class ItemTag(models.Model):
    """One tag on one item, with its provenance."""

    class Source(models.TextChoices):
        EDITOR = "editor", "Editor"
        IMPORT = "import", "Import"
        SUGGESTION = "suggestion", "Suggestion accepted"
        API = "api", "API"
        DEMO = "demo", "Demo data"

    # No single-column indexes on item/tag: the unique (item, tag) and the (tag, item) index
    # serve both directions, and every extra index slows 100,000-row imports.
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="item_tags", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="item_tags", db_index=False)
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


class TagAlias(models.Model):
    """Another path that resolves to a tag: the old path of a merged or renamed tag, or a synonym.

    Imports look a path up among tags first, then among aliases.
    """

    slug_path = models.CharField(max_length=700, unique=True)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="aliases")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "tag aliases"

    def __str__(self) -> str:
        return f"{self.slug_path} → {self.tag.slug_path}"


class ItemTagChange(models.Model):
    """History: one tag added to or removed from one item, by whom and how."""

    class Action(models.TextChoices):
        ADD = "add", "Added"
        REMOVE = "remove", "Removed"

    # Served by the (item, -created_at) index below.
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="tag_changes", db_index=False)
    # Kept (SET_NULL) with the label when the tag is deleted, so history stays readable.
    tag = models.ForeignKey(Tag, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    tag_label = models.CharField(max_length=700)
    action = models.CharField(max_length=10, choices=Action.choices)
    source = models.CharField(max_length=20, choices=ItemTag.Source.choices)
    confidence = models.FloatField(null=True, blank=True)
    # No index: users are rarely deleted, and history is read by item or by day.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # An item's history and "undo my last change".
            models.Index(fields=["item", "-created_at"], name="itemtagchange_item_time_idx"),
            # Throughput per editor per day (coverage dashboard).
            models.Index(fields=["created_at", "user"], name="itemtagchange_time_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.tag_label} on {self.item_id}"


class TagSuggestionModel(models.Model):
    """One training of the tag-suggestion model: progress, quality and the fitted artifact."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # joblib dump of the fitted pure-Python model (catalog.suggestions.TagSuggester).
    artifact = models.BinaryField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    trained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        get_latest_by = "trained_at"
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status__in=["queued", "running"]),
                name="tagsuggestionmodel_one_unfinished",
            ),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0, progress__lte=100),
                name="tagsuggestionmodel_progress_0_100",
            ),
        ]

    def __str__(self) -> str:
        return f"tag suggestion model #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class TagSuggestion(models.Model):
    """A tag the model proposes for an item. Rejected rows stay, so they are never proposed again."""

    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="suggestions")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="suggestions")
    confidence = models.FloatField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    model = models.ForeignKey(
        TagSuggestionModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-confidence", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["item", "tag"], name="tagsuggestion_unique_item_tag"),
            models.CheckConstraint(
                condition=models.Q(confidence__gte=0, confidence__lte=1), name="tagsuggestion_confidence_0_1"
            ),
        ]
        indexes = [
            # Pending suggestions of an item (item page, API), best first.
            models.Index(fields=["item", "status", "-confidence"], name="tagsuggestion_item_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tag} for {self.item} ({self.confidence:.2f}, {self.status})"


class ImportJob(models.Model):
    """One file import: checked (preview), then applied all-or-nothing, inline or on a worker."""

    class Kind(models.TextChoices):
        ITEMS = "items"
        TAXONOMY = "taxonomy"

    class Status(models.TextChoices):
        PREVIEWED = "previewed"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ITEMS)
    filename = models.CharField(max_length=300)
    data = models.BinaryField()
    strict = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PREVIEWED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0, progress__lte=100), name="importjob_progress_0_100"
            ),
        ]

    def __str__(self) -> str:
        return f"import {self.filename} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("catalog:import_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)
