from django.contrib import admin
from treebeard.admin import TreeAdmin
from treebeard.forms import movenodeform_factory

from .models import ImportJob, Item, ItemTag, ItemTagChange, Tag, TagAlias, TagSuggestion, TagSuggestionModel


class ItemTagInline(admin.TabularInline):
    model = ItemTag
    extra = 0
    autocomplete_fields = ["tag"]
    readonly_fields = ["created_by", "created_at"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "title", "kind", "release_date", "active", "updated_at"]
    list_filter = ["active", "kind"]
    search_fields = ["external_id", "title"]
    date_hierarchy = "created_at"
    inlines = [ItemTagInline]


@admin.register(Tag)
class TagAdmin(TreeAdmin):
    form = movenodeform_factory(Tag, exclude=["slug_path"])
    list_display = ["name", "slug_path", "retired"]
    list_filter = ["retired", "depth"]
    search_fields = ["name", "slug_path"]


@admin.register(ItemTag)
class ItemTagAdmin(admin.ModelAdmin):
    list_display = ["item", "tag", "source", "confidence", "created_by", "created_at"]
    list_filter = ["source"]
    search_fields = ["item__title", "item__external_id", "tag__name"]
    raw_id_fields = ["item", "tag"]
    list_select_related = ["item", "tag", "created_by"]


@admin.register(TagAlias)
class TagAliasAdmin(admin.ModelAdmin):
    list_display = ["slug_path", "tag", "created_at"]
    search_fields = ["slug_path", "tag__name"]
    raw_id_fields = ["tag"]


@admin.register(ItemTagChange)
class ItemTagChangeAdmin(admin.ModelAdmin):
    list_display = ["created_at", "item", "action", "tag_label", "source", "user"]
    list_filter = ["action", "source"]
    search_fields = ["item__external_id", "tag_label"]
    raw_id_fields = ["item", "tag"]
    list_select_related = ["item", "user"]


@admin.register(TagSuggestionModel)
class TagSuggestionModelAdmin(admin.ModelAdmin):
    list_display = ["pk", "status", "progress", "trained_at", "created_at"]
    list_filter = ["status"]
    exclude = ["artifact"]
    readonly_fields = ["metrics", "error", "message"]


@admin.register(TagSuggestion)
class TagSuggestionAdmin(admin.ModelAdmin):
    list_display = ["item", "tag", "confidence", "status", "decided_by", "decided_at"]
    list_filter = ["status"]
    raw_id_fields = ["item", "tag", "model"]
    list_select_related = ["item", "tag", "decided_by"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["filename", "kind", "status", "progress", "created_by", "created_at"]
    list_filter = ["status", "kind"]
    exclude = ["data"]
    readonly_fields = ["summary", "error", "message"]
