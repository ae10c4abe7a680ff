from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Metric(models.Model):
    """A reusable metric definition, computed per exposed profile from events after its first exposure."""

    class Kind(models.TextChoices):
        CONVERSION = "conversion", "Conversion (share of profiles doing the event within the window)"
        MEAN = "mean", "Mean per profile (count or sum of a value)"
        RATIO = "ratio", "Ratio (numerator events / denominator events)"
        RETENTION = "retention", "Retention (active again on day N)"

    class Aggregation(models.TextChoices):
        COUNT = "count"
        SUM = "sum"

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, help_text="Used in sentences: '7-day completion'.")
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CONVERSION)
    event_type = models.CharField(
        max_length=20, blank=True, help_text="Canonical event type counted (numerator for ratios)."
    )
    event_name = models.CharField(
        max_length=200, blank=True, help_text="Optional: only events with this name."
    )
    aggregation = models.CharField(max_length=10, choices=Aggregation.choices, default=Aggregation.COUNT)
    value_property = models.CharField(
        max_length=100,
        blank=True,
        help_text="For sums: a key of the event's properties; empty = the event value.",
    )
    denominator_event_type = models.CharField(max_length=20, blank=True, help_text="Ratio metrics only.")
    window_hours = models.PositiveIntegerField(
        null=True, blank=True, help_text="Only events within this many hours of the first exposure count."
    )
    retention_day = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Retention metrics only."
    )
    winsorize_percentile = models.FloatField(
        null=True, blank=True, help_text="Cap per-profile values at this percentile (e.g. 99)."
    )
    higher_is_better = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(winsorize_percentile__isnull=True)
                | models.Q(winsorize_percentile__gt=50, winsorize_percentile__lt=100),
                name="metric_winsorize_50_100",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="ratio") | ~models.Q(denominator_event_type=""),
                name="metric_ratio_has_denominator",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="retention") | models.Q(retention_day__isnull=False),
                name="metric_retention_has_day",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Experiment(models.Model):
    """An A/B (or multi-variant) test. Variants carry weights and a JSON payload."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        PAUSED = "paused"
        STOPPED = "stopped"
        CONCLUDED = "concluded"

    class Decision(models.TextChoices):
        SHIP = "ship", "Ship a variant"
        KEEP_CONTROL = "keep_control", "Keep the control"
        INCONCLUSIVE = "inconclusive", "Inconclusive"

    class Correction(models.TextChoices):
        HOLM = "holm", "Holm-Bonferroni (family-wise error)"
        BH = "bh", "Benjamini-Hochberg (false discovery rate)"
        NONE = "none", "None"

    class Kind(models.TextChoices):
        AB = "ab", "A/B test"
        INTERLEAVING = "interleaving", "Interleaving (two recommenders in one list)"
        BANDIT = "bandit", "Multi-armed bandit (Thompson sampling)"

    key = models.SlugField(max_length=100, unique=True, help_text="Stable key used by SDKs and the API.")
    name = models.CharField(max_length=200)
    kind = models.CharField(
        max_length=20,
        choices=Kind.choices,
        default=Kind.AB,
        help_text="Interleaving: the control's and the treatment's recommenders share one list on a "
        "placement. Bandit: each request draws an arm, traffic follows the rewards.",
    )
    hypothesis = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    traffic_percent = models.PositiveSmallIntegerField(default=100)
    # Segment ids (targeting); a profile must belong to one of them. Empty = everybody.
    segment_ids = models.JSONField(default=list, blank=True)
    hash_seed = models.CharField(max_length=200, blank=True, help_text="Defaults to the key.")
    namespace = models.CharField(
        max_length=100,
        blank=True,
        help_text="Experiments in one namespace with disjoint ranges never share users.",
    )
    namespace_start = models.FloatField(default=0.0)
    namespace_end = models.FloatField(default=1.0)
    holdout_percent = models.PositiveSmallIntegerField(
        default=0,
        help_text="Share of eligible profiles kept on the control experience and out of the analysis.",
    )
    # Segment ids the report breaks results down by, besides the targeted ones.
    breakdown_segment_ids = models.JSONField(default=list, blank=True)
    bandit_min_share = models.FloatField(
        default=0.05, help_text="Bandits: the smallest share of traffic any arm keeps (exploration)."
    )
    phase = models.PositiveSmallIntegerField(default=1)
    planned_sample_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Profiles, all variants."
    )
    alpha = models.FloatField(default=0.05)
    correction = models.CharField(max_length=10, choices=Correction.choices, default=Correction.HOLM)
    cuped = models.BooleanField(
        default=True, help_text="Reduce variance with each profile's pre-exposure value."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(max_length=20, choices=Decision.choices, blank=True)
    decision_variant = models.ForeignKey(
        "Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_note = models.TextField(blank=True)
    concluded_at = models.DateTimeField(null=True, blank=True)
    metrics = models.ManyToManyField(Metric, through="ExperimentMetric", related_name="experiments")
    # Optimistic concurrency: an edit saves only if the version is still the one the editor loaded.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(traffic_percent__gte=0, traffic_percent__lte=100),
                name="experiment_traffic_0_100",
            ),
            models.CheckConstraint(
                condition=models.Q(holdout_percent__gte=0, holdout_percent__lt=100),
                name="experiment_holdout_0_99",
            ),
            models.CheckConstraint(
                condition=models.Q(namespace_start__gte=0, namespace_end__lte=1)
                & models.Q(namespace_start__lt=models.F("namespace_end")),
                name="experiment_namespace_range",
            ),
            models.CheckConstraint(
                condition=models.Q(alpha__gt=0, alpha__lt=0.5), name="experiment_alpha_0_05"
            ),
            models.CheckConstraint(
                condition=models.Q(bandit_min_share__gte=0, bandit_min_share__lte=0.5),
                name="experiment_bandit_min_share_0_05",
            ),
            models.CheckConstraint(
                condition=models.Q(status="concluded", decision__in=["ship", "keep_control", "inconclusive"])
                | (~models.Q(status="concluded") & models.Q(decision="")),
                name="experiment_decision_iff_concluded",
            ),
        ]
        indexes = [
            # The scheduled analysis and the dashboard: running experiments.
            models.Index(fields=["status"], name="experiment_status_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("experiments:experiment_detail", args=[self.key])

    @property
    def seed(self) -> str:
        """The hash seed of the current phase (phase 1 keeps the plain seed, as GrowthBook does)."""
        base = self.hash_seed or self.key
        return base if self.phase == 1 else f"{base}:phase{self.phase}"

    @property
    def is_locked(self) -> bool:
        """Weights, variants and metrics are frozen once traffic has been assigned."""
        return self.status != self.Status.DRAFT


class Variant(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    weight = models.FloatField(default=0.5)
    payload = models.JSONField(default=dict, blank=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="0 is the control.")

    class Meta:
        ordering = ["experiment", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="variant_unique_key"),
            models.UniqueConstraint(fields=["experiment", "position"], name="variant_unique_position"),
            models.CheckConstraint(
                condition=models.Q(weight__gte=0, weight__lte=1), name="variant_weight_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key}:{self.key}"

    @property
    def is_control(self) -> bool:
        return self.position == 0


class ExperimentMetric(models.Model):
    class Role(models.TextChoices):
        PRIMARY = "primary"
        SECONDARY = "secondary"
        GUARDRAIL = "guardrail"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="experiment_metrics")
    metric = models.ForeignKey(Metric, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.SECONDARY)

    class Meta:
        ordering = ["experiment", "role", "metric__name"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "metric"], name="experimentmetric_unique"),
            models.UniqueConstraint(
                fields=["experiment"], condition=models.Q(role="primary"), name="experimentmetric_one_primary"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key}:{self.metric.key} ({self.role})"


class Phase(models.Model):
    """A period of an experiment with fixed settings. A corrupting change starts a new phase,
    which re-randomises (a new seed) and restarts the analysis."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="phases")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    settings = models.JSONField(default=dict, help_text="Traffic, weights and metrics of the phase.")

    class Meta:
        ordering = ["experiment", "number"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "number"], name="phase_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key} phase {self.number}"


class Assignment(models.Model):
    """The sticky variant of a profile in one phase of an experiment (the first assignment wins)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="assignments")
    phase = models.PositiveSmallIntegerField(default=1)
    profile = models.ForeignKey("personalization.Profile", on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="assignments")
    holdout = models.BooleanField(default=False)
    bucket = models.FloatField(null=True, blank=True)
    assigned_at = models.DateTimeField()
    first_exposed_at = models.DateTimeField(null=True, blank=True)
    last_exposed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "phase", "profile"], name="assignment_unique_profile_phase"
            ),
        ]
        indexes = [
            # The analysis: exposed profiles of one phase, grouped by variant.
            models.Index(fields=["experiment", "phase", "variant"], name="assignment_exp_phase_var_idx"),
            # Identity merges: a profile's assignments.
            models.Index(fields=["profile"], name="assignment_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} -> {self.variant_id} ({self.experiment_id}/{self.phase})"


class Exposure(models.Model):
    """One time a profile was shown its variant (through the assignment API or a placement)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="exposures")
    phase = models.PositiveSmallIntegerField(default=1)
    profile = models.ForeignKey("personalization.Profile", on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="exposures")
    timestamp = models.DateTimeField()
    source = models.CharField(max_length=30, default="api")

    class Meta:
        indexes = [
            # "Profiles exposed to several variants" and per-variant exposure counts.
            models.Index(fields=["experiment", "phase", "profile"], name="exposure_exp_phase_prof_idx"),
            # Identity merges: a profile's exposures.
            models.Index(fields=["profile"], name="exposure_profile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} saw {self.variant_id} at {self.timestamp:%Y-%m-%d %H:%M}"


class AnalysisSnapshot(models.Model):
    """The full analysis of one phase as of one time. Recomputing the same as-of time overwrites it."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="snapshots")
    phase = models.PositiveSmallIntegerField(default=1)
    as_of = models.DateTimeField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.SCHEDULE)
    results = models.JSONField(default=dict)
    computed_at = models.DateTimeField()
    duration_seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["experiment", "phase", "as_of"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "phase", "as_of"], name="snapshot_unique_as_of"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key} phase {self.phase} as of {self.as_of:%Y-%m-%d %H:%M}"


class VariantResult(models.Model):
    """Per (snapshot, metric, variant): sufficient statistics and the headline numbers, for time series."""

    snapshot = models.ForeignKey(AnalysisSnapshot, on_delete=models.CASCADE, related_name="variant_results")
    metric = models.ForeignKey(Metric, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="+")
    n = models.PositiveIntegerField()
    sum = models.FloatField()
    sum_sq = models.FloatField()
    sum_y = models.FloatField(null=True, blank=True)
    sum_y_sq = models.FloatField(null=True, blank=True)
    sum_xy = models.FloatField(null=True, blank=True)
    mean = models.FloatField()
    lift = models.FloatField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    p_value = models.FloatField(null=True, blank=True)
    chance_to_win = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "metric", "variant"], name="variantresult_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_id}:{self.metric_id}:{self.variant_id}"


class InterleavedImpression(models.Model):
    """One team-draft interleaved list served on a placement, with the team of every item.

    Team "A" is the control's recommender, "B" the treatment's. Each result's recommendation
    id is ``{token}.{team}{rank}``, so a tracked click carrying it credits its team.
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="impressions")
    phase = models.PositiveSmallIntegerField(default=1)
    profile = models.ForeignKey("personalization.Profile", on_delete=models.CASCADE, related_name="+")
    token = models.CharField(max_length=32, unique=True)
    items = models.JSONField(default=list, help_text="[[item id, team], ...] in the order shown.")
    timestamp = models.DateTimeField()

    class Meta:
        indexes = [
            # The interleaving analysis: impressions of one phase up to an as-of time.
            models.Index(fields=["experiment", "phase", "timestamp"], name="interleaved_exp_phase_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id}:{self.token}"


class BanditAllocation(models.Model):
    """The traffic share of every arm of a bandit after one posterior update (charted over time)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="allocations")
    phase = models.PositiveSmallIntegerField(default=1)
    computed_at = models.DateTimeField()
    shares = models.JSONField(default=dict, help_text="{arm key: share of traffic}")
    arms = models.JSONField(default=dict, help_text="{arm key: {trials, successes, p_best}}")

    class Meta:
        ordering = ["experiment", "computed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "phase", "computed_at"], name="banditallocation_unique_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id} allocation at {self.computed_at:%Y-%m-%d %H:%M}"
