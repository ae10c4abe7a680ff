from django.contrib import admin

from .models import AnalysisSnapshot, Assignment, Experiment, ExperimentMetric, Metric, Phase, Variant


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 0


class ExperimentMetricInline(admin.TabularInline):
    model = ExperimentMetric
    extra = 0


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "status", "phase", "owner", "traffic_percent", "started_at", "ended_at"]
    list_filter = ["status"]
    search_fields = ["key", "name", "hypothesis"]
    prepopulated_fields = {"key": ["name"]}
    # Status changes go through the services (start/pause/stop/conclude on the experiment page).
    readonly_fields = ["status", "phase", "decision", "decision_variant", "concluded_at"]
    inlines = [VariantInline, ExperimentMetricInline]


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ["experiment", "key", "name", "weight", "position"]
    search_fields = ["experiment__key", "key", "name"]
    list_select_related = ["experiment"]


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "kind", "event_type", "window_hours", "higher_is_better"]
    list_filter = ["kind"]
    search_fields = ["key", "name"]


@admin.register(Phase)
class PhaseAdmin(admin.ModelAdmin):
    list_display = ["experiment", "number", "started_at", "ended_at", "reason"]
    list_select_related = ["experiment"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["experiment", "phase", "profile", "variant", "holdout", "first_exposed_at"]
    list_filter = ["holdout"]
    list_select_related = ["experiment", "profile", "variant"]
    raw_id_fields = ["profile"]
    search_fields = ["experiment__key", "profile__external_id"]


@admin.register(AnalysisSnapshot)
class AnalysisSnapshotAdmin(admin.ModelAdmin):
    list_display = ["experiment", "phase", "as_of", "trigger", "computed_at", "duration_seconds"]
    list_select_related = ["experiment"]
