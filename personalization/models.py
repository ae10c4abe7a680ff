from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from recsite.locking import LockedDeleteMixin, LockedDeleteQuerySet


class Source(LockedDeleteMixin, models.Model):
    """Where events come from (a website, an app, an import). ``message_id`` is unique per source."""

    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = LockedDeleteQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name


class Profile(LockedDeleteMixin, models.Model):
    """One person: known by ``external_id`` (Segment's userId) and/or anonymous ids."""

    # NULL (not "") for anonymous profiles, so the partial unique constraint ignores them.
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    traits = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = LockedDeleteQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"],
                condition=models.Q(external_id__isnull=False),
                name="profile_unique_external_id",
            ),
        ]
        # No index on last_seen: ingestion widens first/last seen of every profile it writes
        # for, and an indexed column turns each of those updates from a cheap in-page (HOT)
        # update into new index entries. Sorting or counting by last seen scans the table
        # instead (74 ms at 1,000,000 profiles, docs/benchmarks.md).
        permissions = [("export_data", "Can export data (profiles, events, reports)")]

    def __str__(self) -> str:
        return self.external_id or f"anonymous #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("personalization:profile_detail", args=[self.pk])


class AnonymousId(models.Model):
    """A device or browser id (Segment's anonymousId) linked to a profile."""

    anonymous_id = models.CharField(max_length=200, unique=True)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="anonymous_ids")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.anonymous_id


class Event(models.Model):
    """One behavioural fact. ``type`` is the canonical type every capability uses."""

    class Type(models.TextChoices):
        VIEW = "view"
        PLAY = "play"
        PAUSE = "pause"
        COMPLETE = "complete"
        ABANDON = "abandon"
        RATE = "rate"
        LIKE = "like"
        DISLIKE = "dislike"
        ADD_TO_LIST = "add_to_list", "add to list"
        ADD_TO_CART = "add_to_cart", "add to cart"
        PURCHASE = "purchase"
        SEARCH = "search"
        CLICK = "click"
        PAGE = "page"
        IDENTIFY = "identify"
        ALIAS = "alias"
        OTHER = "other"

    # No single-column indexes on the foreign keys: the composite indexes below lead with
    # each of them, and every extra index costs each ingested event a B-tree insert.
    # No database constraint on the source either (a check per ingested row): ingestion
    # locks the source (``FOR KEY SHARE``) and deleting one locks it first.
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="events", db_index=False, db_constraint=False
    )
    message_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200, help_text="The name as received, e.g. 'Video Playback Started'.")
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.OTHER)
    # No database constraint on the profile (db_constraint=False): checking it for every
    # ingested row at commit cost more than any other check. The application keeps the
    # integrity instead (docs/architecture.md, "Profiles without foreign-key constraints").
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False
    )
    # No database constraint on the item either: ingestion locks the items it writes to
    # (``FOR KEY SHARE``) and item deletion locks first (recsite/locking.py).
    item = models.ForeignKey(
        "catalog.Item",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    value = models.FloatField(null=True, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "message_id"], name="event_unique_source_message"),
        ]
        indexes = [
            # A profile's timeline and "consumed items" exclusion.
            models.Index(fields=["profile", "timestamp"], name="event_profile_time_idx"),
            # Dashboard events per day and training snapshots over a time window.
            models.Index(fields=["timestamp", "type"], name="event_time_type_idx"),
            # Item popularity and item pages.
            models.Index(fields=["item", "timestamp"], name="event_item_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} by {self.profile_id} at {self.timestamp:%Y-%m-%d %H:%M}"


class Recommender(models.Model):
    """An algorithm with its settings. Training runs fit it; one run's model is active."""

    class Algorithm(models.TextChoices):
        TRENDING = "trending", "Trending (time-decayed popularity)"
        POPULARITY = "popularity", "Popularity"
        ITEM_KNN = "item_knn", "Item-kNN (cosine, shrinkage)"
        EASE = "ease", "EASE (closed-form linear autoencoder)"
        ALS = "als", "Implicit ALS (matrix factorisation)"
        CONTENT = "content", "Content-based (BM25 over tags and text)"
        HYBRID = "hybrid", "Hybrid (weighted blend)"

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    algorithm = models.CharField(max_length=30, choices=Algorithm.choices, default=Algorithm.TRENDING)
    params = models.JSONField(default=dict, blank=True)
    active_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retrain_every_hours = models.PositiveIntegerField(
        null=True, blank=True, help_text="Retrain on a schedule; empty for manual training only."
    )
    primary_metric = models.CharField(
        max_length=40, default="ndcg@10", help_text="Offline metric that decides auto-activation."
    )
    auto_activate = models.BooleanField(
        default=True, help_text="Activate a new version only when it does not lose on the primary metric."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("personalization:recommender_detail", args=[self.pk])


class TrainingRun(models.Model):
    """One fit of a recommender on a data snapshot: its progress, timings, metrics and errors."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    recommender = models.ForeignKey(Recommender, on_delete=models.CASCADE, related_name="runs")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    params = models.JSONField(default=dict, blank=True)
    data_sizes = models.JSONField(default=dict, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per phase.")
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    activate_on_success = models.BooleanField(default=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    snapshot_at = models.DateTimeField(
        null=True, blank=True, help_text="Data cut-off: consumption after it is excluded at serving time."
    )
    activation_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["recommender"],
                condition=models.Q(status__in=["queued", "running"]),
                name="trainingrun_one_unfinished_per_recommender",
            ),
            models.UniqueConstraint(fields=["recommender", "version"], name="trainingrun_unique_version"),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0, progress__lte=100), name="trainingrun_progress_0_100"
            ),
        ]
        indexes = [
            # Jobs list and the reaper: unfinished runs by age.
            models.Index(fields=["status", "heartbeat_at"], name="trainingrun_status_beat_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.recommender} v{self.version} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("personalization:training_run_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ModelArtifact(models.Model):
    """The fitted model of a successful run, stored in the database so every worker and
    web process can load it without a shared file system."""

    run = models.OneToOneField(
        TrainingRun, on_delete=models.CASCADE, primary_key=True, related_name="artifact"
    )
    format = models.CharField(max_length=30, default="json")
    data = models.BinaryField()
    size_bytes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"artifact of {self.run}"


class PrecomputedList(models.Model):
    """Top-N items of one profile from one run, computed on the worker after training so that
    serving a warm profile is one indexed read plus request-time filtering."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="precomputed")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    item_ids = models.JSONField(default=list)
    scores = models.JSONField(default=list)
    reasons = models.JSONField(default=list)

    class Meta:
        constraints = [
            # Also the index serving reads by: (run, profile).
            models.UniqueConstraint(fields=["run", "profile"], name="precomputed_unique_run_profile"),
        ]

    def __str__(self) -> str:
        return f"top-{len(self.item_ids)} of {self.profile_id} from run {self.run_id}"


class Placement(models.Model):
    """Where recommendations appear (a home row, similar items, an email) and how they are made."""

    key = models.SlugField(max_length=100, unique=True, help_text="Used by the API: ?placement=KEY.")
    name = models.CharField(max_length=200)
    recommender = models.ForeignKey(Recommender, on_delete=models.PROTECT, related_name="placements")
    fallbacks = models.JSONField(
        default=list, blank=True, help_text="Recommender names tried in order when the first cannot fill k."
    )
    k = models.PositiveSmallIntegerField(default=10)
    include_tags = models.JSONField(default=list, blank=True, help_text="Tag paths; items must carry one.")
    exclude_tags = models.JSONField(
        default=list, blank=True, help_text="Tag paths; items carrying one are left out."
    )
    kinds = models.JSONField(default=list, blank=True, help_text="Item kinds allowed; empty for all.")
    exclude_consumed = models.BooleanField(default=True)
    diversity = models.FloatField(
        default=0.0, help_text="0 = pure relevance; up to 1 = more diverse (MMR trade-off on tags)."
    )
    segment_overrides = models.JSONField(
        default=dict, blank=True, help_text='{"segment-key": "recommender-name"}: per-segment recommender.'
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(condition=models.Q(k__gte=1, k__lte=100), name="placement_k_1_100"),
            models.CheckConstraint(
                condition=models.Q(diversity__gte=0, diversity__lte=1), name="placement_diversity_0_1"
            ),
        ]

    def __str__(self) -> str:
        return self.name


# --- Behavioural data: write keys, identity history, interactions, preferences, privacy --------


class WriteKey(models.Model):
    """A secret that lets a source send events (HTTP Basic user name, as Segment does).

    Only the SHA-256 of the key is stored: keys are 32 random bytes, so a slow password hash
    would add nothing but latency to every tracking request.
    """

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="write_keys")
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a key.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.source} · {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class MergeRequest(models.Model):
    """Two known profiles that look like one person. Never merged automatically: an admin
    decides. ``profile`` would be merged into ``into``."""

    class Status(models.TextChoices):
        OPEN = "open"
        MERGED = "merged"
        DISMISSED = "dismissed"

    # SET_NULL: an approved request keeps its row after ``profile`` is merged away.
    profile = models.ForeignKey(Profile, null=True, on_delete=models.SET_NULL, related_name="+")
    into = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=300)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "into"],
                condition=models.Q(status="open"),
                name="mergerequest_one_open_per_pair",
            ),
            models.CheckConstraint(
                condition=~models.Q(profile=models.F("into")), name="mergerequest_distinct_profiles"
            ),
        ]
        indexes = [
            # The admins' queue: open requests, newest first.
            models.Index(fields=["status", "-created_at"], name="mergerequest_status_idx"),
        ]

    def __str__(self) -> str:
        return f"merge {self.profile_id} into {self.into_id} ({self.status})"


class ProfileMerge(models.Model):
    """History: ``merged_profile_id`` (now gone) was merged into ``survivor``.

    The unique merged id makes a merge idempotent: a retry finds the row and stops.
    """

    survivor = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges")
    merged_profile_id = models.BigIntegerField(unique=True)
    reason = models.CharField(max_length=30)
    moved = models.JSONField(default=dict, blank=True, help_text="Rows moved, by kind.")
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"profile {self.merged_profile_id} merged into {self.survivor_id}"


class Interaction(models.Model):
    """The implicit-feedback strength of one (profile, item) pair, maintained on ingestion so
    that training and segments need not scan raw events."""

    # Covered by the unique (profile, item) and the (item, strength) indexes. No database
    # constraint on the profile, as for Event.profile.
    profile = models.ForeignKey(
        Profile, on_delete=models.CASCADE, related_name="interactions", db_index=False, db_constraint=False
    )
    item = models.ForeignKey(
        "catalog.Item",
        on_delete=models.CASCADE,
        related_name="interactions",
        db_index=False,
        db_constraint=False,
    )
    strength = models.FloatField(default=0.0)
    count = models.PositiveIntegerField(default=0)
    last_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index for "a profile's interactions" (leading column).
            models.UniqueConstraint(fields=["profile", "item"], name="interaction_unique_profile_item"),
        ]
        indexes = [
            # Item-side reads: who interacted with an item (similar items, segment rules).
            models.Index(fields=["item", "strength"], name="interaction_item_strength_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} x {self.item_id}: {self.strength:g}"


class DeclaredPreference(models.Model):
    """Zero-party data: a tag a person said they like or dislike (quiz, onboarding API)."""

    class Sentiment(models.IntegerChoices):
        LIKE = 1, "like"
        DISLIKE = -1, "dislike"

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="declared_preferences")
    tag = models.ForeignKey("catalog.Tag", on_delete=models.CASCADE, related_name="+")
    sentiment = models.SmallIntegerField(choices=Sentiment.choices)
    origin = models.CharField(max_length=20, default="api", help_text="quiz, api, import...")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "tag"], name="declaredpref_unique_profile_tag"),
            models.CheckConstraint(condition=models.Q(sentiment__in=[1, -1]), name="declaredpref_sentiment"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.get_sentiment_display()} {self.tag_id}"


class DeletionLog(models.Model):
    """A profile was deleted: who, when, and a keyed hash of its ids (no personal data)."""

    id_hash = models.CharField(max_length=64, db_index=True)  # "was this id deleted?" look-ups
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deleted_at = models.DateTimeField(auto_now_add=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Rows deleted, by kind.")

    class Meta:
        ordering = ["-deleted_at", "-pk"]

    def __str__(self) -> str:
        return f"deletion {self.id_hash[:12]} at {self.deleted_at:%Y-%m-%d %H:%M}"


class ImportCheckpoint(models.Model):
    """The last line of an import file up to which every event is committed (and the line
    ranges committed after it), so a rerun resumes there."""

    key = models.CharField(max_length=500, unique=True, help_text="Resolved path of the file.")
    line = models.PositiveBigIntegerField(default=0)
    # Line ranges [first, last] committed beyond ``line`` (parallel writers commit chunks
    # out of order; ``line`` advances over them once the chunks before are committed).
    pending = models.JSONField(default=list, blank=True)
    stored = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key} @ {self.line}"


# --- Segments ----------------------------------------------------------------------------------


class Segment(models.Model):
    """A named set of profiles: defined by a rule (dynamic), uploaded (static) or clustered (discovered).

    The rule is JSON in the versioned schema of ``personalization/segments.py`` (docs/segments.md).
    """

    class Kind(models.TextChoices):
        DYNAMIC = "dynamic"
        STATIC = "static"
        DISCOVERED = "discovered"

    key = models.SlugField(max_length=100, unique=True, help_text="Used by placements and the API.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.DYNAMIC)
    rule = models.JSONField(default=dict, blank=True)
    refresh_every_minutes = models.PositiveIntegerField(
        null=True, blank=True, default=60, help_text="Refresh on a schedule; empty for on-demand only."
    )
    size = models.PositiveIntegerField(default=0)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("personalization:segment_detail", args=[self.pk])


class SegmentMembership(models.Model):
    """One stay of a profile in a segment. A refresh closes stays (``exited_at``) and opens new
    ones; it never rewrites a closed stay, so history can be charted."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="memberships")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="segment_memberships")
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # At most one open stay; also the index for "current members of a segment".
            models.UniqueConstraint(
                fields=["segment", "profile"],
                condition=models.Q(exited_at__isnull=True),
                name="segmentmembership_one_open_stay",
            ),
            models.CheckConstraint(
                condition=models.Q(exited_at__isnull=True) | models.Q(exited_at__gte=models.F("entered_at")),
                name="segmentmembership_exit_after_entry",
            ),
        ]
        indexes = [
            # "Segments of a profile" (API, experiment targeting resolver).
            models.Index(fields=["profile", "segment"], name="segmentmember_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.segment_id} from {self.entered_at:%Y-%m-%d %H:%M}"


class SegmentRefresh(models.Model):
    """One computation of a segment's members: when, how long, how many entered and left."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="refreshes")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=20, default="manual", help_text="manual, schedule, upload, api")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    size = models.PositiveIntegerField(null=True, blank=True)
    entered = models.PositiveIntegerField(default=0)
    exited = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            # Two refreshes of one segment never run at once.
            models.UniqueConstraint(
                fields=["segment"],
                condition=models.Q(status="running"),
                name="segmentrefresh_one_running_per_segment",
            ),
        ]
        indexes = [
            # Size history of a segment (charts, sparklines), newest first.
            models.Index(fields=["segment", "-started_at"], name="segmentrefresh_history_idx"),
        ]

    def __str__(self) -> str:
        return f"refresh of {self.segment_id} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class SegmentWebhook(models.Model):
    """A URL called with a signed JSON payload when profiles enter or leave a segment.

    The secret must be kept in clear to sign (HMAC-SHA256); it is shown once, then only its
    first characters."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=100)
    on_enter = models.BooleanField(default=True)
    on_exit = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.url} ({self.segment_id})"

    @property
    def secret_hint(self) -> str:
        return f"{self.secret[:8]}…"


class WebhookDelivery(models.Model):
    """One payload (up to SEGMENT_WEBHOOK_BATCH profiles of one refresh, entering or leaving)
    and the state of its delivery: the last attempt's status code or error, retries with backoff."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    webhook = models.ForeignKey(SegmentWebhook, on_delete=models.CASCADE, related_name="deliveries")
    refresh = models.ForeignKey(SegmentRefresh, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=10, help_text="enter or exit")
    part = models.PositiveIntegerField(default=1)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # A re-run of the dispatch task for one refresh does not send twice.
            models.UniqueConstraint(
                fields=["webhook", "refresh", "event", "part"], name="webhookdelivery_unique_part"
            ),
        ]
        indexes = [
            # The delivery log of a webhook, newest first.
            models.Index(fields=["webhook", "-created_at"], name="webhookdelivery_log_idx"),
            # The beat sweep: retries whose time has come.
            models.Index(fields=["status", "next_attempt_at"], name="webhookdelivery_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.part} of refresh {self.refresh_id} to {self.webhook_id} ({self.status})"


class DiscoveryJob(models.Model):
    """One clustering of the audience, run on the heavy queue; its clusters are kept in ``result``
    so a marketer can save one as a segment later without re-running it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    k = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Empty: chosen by silhouette.")
    max_k = models.PositiveSmallIntegerField(default=8)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"discovery #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("personalization:segment_discovery_detail", args=[self.pk])
