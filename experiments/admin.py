from django.contrib import admin

from .models import Experiment, Variant


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 0


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "status", "owner", "traffic_percent", "started_at", "ended_at"]
    list_filter = ["status"]
    search_fields = ["key", "name", "hypothesis"]
    prepopulated_fields = {"key": ["name"]}
    inlines = [VariantInline]


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ["experiment", "key", "name", "weight", "position"]
    search_fields = ["experiment__key", "key", "name"]
    list_select_related = ["experiment"]
