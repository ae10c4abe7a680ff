import io

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from recsite import tables

from . import charts, forms, imports, services
from .models import ImportJob, Item, Tag, TagSuggestion


def _back(request, default: str):
    """Return to the page that posted (``next``), if it is ours."""
    target = request.POST.get("next") or request.GET.get("next")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(default)


def _item_url(item: Item, queue: str | None) -> str:
    url = item.get_absolute_url()
    return f"{url}?queue={queue}" if queue in services.QUEUES else url


# --- Items -----------------------------------------------------------------------------


ITEM_COLUMNS = [
    tables.Column("title", "Title", ("title",)),
    tables.Column("external_id", "External id", ("external_id",)),
    tables.Column("kind", "Kind", ("kind", "title")),
    tables.Column("year", "Released", ("release_date", "title"), numeric=True, descending_first=True),
    tables.Column("tags", "Tags", ("tag_count", "title"), numeric=True, descending_first=True),
    tables.Column("status", "Status", ("active", "title")),
]


@permission_required("catalog.view_item", raise_exception=True)
def item_list(request):
    items = Item.objects.annotate(tag_count=Count("item_tags"))
    query = request.GET.get("q", "").strip()
    if query:
        items = items.filter(Q(title__icontains=query) | Q(external_id__iexact=query))
    kind = request.GET.get("kind", "")
    if kind:
        items = items.filter(kind=kind)
    tag_path = request.GET.get("tag", "").strip()
    if tag_path:
        tag = services.tag_resolve(path=tag_path)
        items = items.filter(item_tags__tag__path__startswith=tag.path).distinct() if tag else items.none()
    table = tables.table(request, items, ITEM_COLUMNS, default_sort="title")
    kinds = Item.objects.order_by("kind").values_list("kind", flat=True).distinct()
    context = {"table": table, "page": table.page, "q": query, "kind": kind, "kinds": kinds, "tag": tag_path}
    if request.user.has_perm("catalog.add_itemtag"):
        context["tag_choices"] = services.tag_choices()
        context["bulk_form"] = forms.BulkTagForm()
    return render(request, "catalog/item_list.html", context)


@require_POST
@permission_required("catalog.add_itemtag", raise_exception=True)
def items_bulk_tag(request):
    form = forms.BulkTagForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{'Tag' if field == 'tag' else ''} {' '.join(errors)}".strip())
        return _back(request, reverse("catalog:item_list"))
    tag, action = form.cleaned_data["tag"], form.cleaned_data["action"]
    try:
        changed = services.items_tag_bulk(
            item_ids=form.cleaned_data["items"], tag=tag, action=action, user=request.user
        )
    except services.CatalogError as exc:
        messages.error(request, str(exc))
    else:
        verb = "added to" if action == "add" else "removed from"
        messages.success(request, f"{tag.label()} {verb} {changed} item(s).")
    return _back(request, reverse("catalog:item_list"))


@permission_required("catalog.view_item", raise_exception=True)
def item_detail(request, pk: int):
    item = get_object_or_404(Item, pk=pk)
    queue = request.GET.get("queue") or "attention"
    can_tag = request.user.has_perm("catalog.add_itemtag")
    context = {
        "item": item,
        "facets": services.item_tags_by_facet(item=item),
        "history": services.item_history(item=item),
        "suggestions": services.item_suggestions(item=item),
        "queue": queue if queue in services.QUEUES else "attention",
        "queue_name": services.QUEUES.get(queue, services.QUEUES["attention"]),
        "can_tag": can_tag,
    }
    if can_tag:
        next_item = services.item_queue_next(item=item, reason=context["queue"])
        context["next_url"] = _item_url(next_item, context["queue"]) if next_item else ""
        context["tag_choices"] = services.tag_choices()
    return render(request, "catalog/item_detail.html", context)


def _tag_from_post(request) -> Tag | None:
    tag_id = request.POST.get("tag_id", "")
    if tag_id.isdigit():
        return Tag.objects.filter(pk=int(tag_id)).first()
    path = request.POST.get("tag", "").strip()
    return services.tag_resolve(path=path) if path else None


@require_POST
@permission_required("catalog.add_itemtag", raise_exception=True)
def item_tag_add(request, pk: int):
    item = get_object_or_404(Item, pk=pk)
    tag = _tag_from_post(request)
    if tag is None:
        messages.error(request, "No such tag. Type part of a name and pick one from the list.")
        return _back(request, item.get_absolute_url())
    try:
        _, created = services.item_tag_add(item=item, tag=tag, user=request.user)
    except services.CatalogError as exc:
        messages.error(request, str(exc))
    else:
        if created:
            messages.success(request, f"Added {tag.label()}.")
        else:
            messages.info(request, f"{tag.label()} was already there.")
    return _back(request, item.get_absolute_url())


@require_POST
@permission_required("catalog.delete_itemtag", raise_exception=True)
def item_tag_remove(request, pk: int, tag_pk: int):
    item = get_object_or_404(Item, pk=pk)
    tag = get_object_or_404(Tag, pk=tag_pk)
    if services.item_tag_remove(item=item, tag=tag, user=request.user):
        messages.success(request, f"Removed {tag.label()}. Press U to undo.")
    return _back(request, item.get_absolute_url())


@require_POST
@permission_required("catalog.add_itemtag", raise_exception=True)
def item_undo(request, pk: int):
    item = get_object_or_404(Item, pk=pk)
    try:
        change = services.item_change_undo(item=item, user=request.user)
    except services.CatalogError as exc:
        messages.error(request, str(exc))
    else:
        if change is None:
            messages.info(request, "Nothing to undo.")
        else:
            verb = "removed again" if change.action == "add" else "put back"
            messages.success(request, f"Undone: {change.tag_label} {verb}.")
    return _back(request, item.get_absolute_url())


@require_POST
@permission_required("catalog.add_itemtag", raise_exception=True)
def item_suggestions_accept_all(request, pk: int):
    item = get_object_or_404(Item, pk=pk)
    accepted = services.suggestions_accept_all(item=item, user=request.user)
    messages.success(request, f"Accepted {accepted} suggestion(s).")
    return _back(request, item.get_absolute_url())


@require_POST
@permission_required("catalog.add_itemtag", raise_exception=True)
def suggestion_decide(request, pk: int, decision: str):
    suggestion = get_object_or_404(TagSuggestion.objects.select_related("item", "tag"), pk=pk)
    try:
        if decision == "accept":
            services.suggestion_accept(suggestion=suggestion, user=request.user)
            messages.success(request, f"Accepted {suggestion.tag.label()}.")
        elif decision == "reject":
            services.suggestion_reject(suggestion=suggestion, user=request.user)
            messages.success(request, f"Rejected {suggestion.tag.label()}; it will not be suggested again.")
        else:
            messages.error(request, "Choose accept or reject.")
    except services.CatalogError as exc:
        messages.error(request, str(exc))
    return _back(request, suggestion.item.get_absolute_url())


@permission_required("catalog.view_item", raise_exception=True)
def queue(request):
    reason = request.GET.get("queue", "attention")
    if reason not in services.QUEUES:
        reason = "attention"
    items = services.item_queue(reason=reason)
    if reason == "recent":
        items = items.order_by("-updated_at", "pk")
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "catalog/queue.html",
        {"page": page, "queue": reason, "queues": services.QUEUES, "counts": services.item_queue_counts()},
    )


# --- Taxonomy --------------------------------------------------------------------------


@permission_required("catalog.view_tag", raise_exception=True)
def taxonomy(request):
    latest = services.suggestion_model_latest()
    running = services.suggestion_model_unfinished()
    return render(
        request,
        "catalog/taxonomy.html",
        {
            "tree": services.taxonomy_tree(),
            "create_form": forms.TagCreateForm(initial={"parent": request.GET.get("parent")}),
            "model": latest,
            "running": running,
        },
    )


@require_POST
@permission_required("catalog.change_tag", raise_exception=True)
def suggestion_model_train(request):
    try:
        services.suggestion_model_request(user=request.user)
    except services.CatalogError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Training queued. Suggestions refresh when it finishes.")
    return redirect("catalog:taxonomy")


@permission_required("catalog.add_tag", raise_exception=True)
def tag_create(request):
    form = forms.TagCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            tag = services.tag_create(**form.cleaned_data)
        except services.CatalogError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"Created {tag.label()}.")
            return redirect("catalog:taxonomy")
    return render(
        request,
        "catalog/tag_form.html",
        {"form": form, "title": "New tag"},
        status=400 if form.errors else 200,
    )


def _tag_page(request, tag: Tag, **overrides):
    ancestors = Tag.objects.get_ancestors(tag)
    items = Item.objects.filter(item_tags__tag__path__startswith=tag.path).distinct().order_by("title")
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    context = {
        "tag": tag,
        "label": tag.label(),
        "ancestors": ancestors,
        "children": Tag.objects.get_children(tag),
        "aliases": tag.aliases.order_by("slug_path"),
        "usage": services.tag_usage(tag=tag),
        "page": page,
        "edit_form": forms.TagEditForm(
            initial={"name": tag.name, "description": tag.description, "version": tag.version}
        ),
        "move_form": forms.TagMoveForm(initial={"version": tag.version, "parent": ancestors.last()}),
        "merge_form": forms.TagMergeForm(),
        "retire_form": forms.TagRetireForm(initial={"retired": not tag.retired, "version": tag.version}),
        **overrides,
    }
    status = (
        400 if any(getattr(f, "errors", None) for k, f in overrides.items() if k.endswith("_form")) else 200
    )
    return render(request, "catalog/tag_detail.html", context, status=status)


@permission_required("catalog.view_tag", raise_exception=True)
def tag_detail(request, pk: int):
    return _tag_page(request, get_object_or_404(Tag, pk=pk))


def _tag_post(request, pk: int, form_class, form_key: str, action):
    """Shared shape of the tag edit forms: validate, call the service, show errors in place."""
    tag = get_object_or_404(Tag, pk=pk)
    form = form_class(request.POST)
    if form.is_valid():
        try:
            result = action(tag, form.cleaned_data)
        except services.StaleEdit as exc:
            messages.error(request, str(exc))
            return redirect("catalog:tag_detail", pk=pk)
        except services.CatalogError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, result[0])
            return redirect(result[1])
    return _tag_page(request, tag, **{form_key: form})


@require_POST
@permission_required("catalog.change_tag", raise_exception=True)
def tag_edit(request, pk: int):
    def action(tag, data):
        tag = services.tag_update(
            tag=tag, version=data["version"], name=data["name"], description=data["description"]
        )
        return f"Saved {tag.label()}.", tag

    return _tag_post(request, pk, forms.TagEditForm, "edit_form", action)


@require_POST
@permission_required("catalog.change_tag", raise_exception=True)
def tag_move(request, pk: int):
    def action(tag, data):
        tag = services.tag_move(tag=tag, parent=data["parent"], version=data["version"])
        return f"Moved to {tag.label()}.", tag

    return _tag_post(request, pk, forms.TagMoveForm, "move_form", action)


@require_POST
@permission_required("catalog.change_tag", raise_exception=True)
def tag_merge(request, pk: int):
    def action(tag, data):
        name = tag.label()
        target = services.tag_merge(source=tag, target=data["target"], user=request.user)
        return f"Merged {name} into {target.label()}; the old name is kept as an alias.", target

    return _tag_post(request, pk, forms.TagMergeForm, "merge_form", action)


@require_POST
@permission_required("catalog.change_tag", raise_exception=True)
def tag_retire(request, pk: int):
    def action(tag, data):
        tag = services.tag_retire(tag=tag, retired=data["retired"], version=data["version"])
        return (f"Retired {tag.name}." if tag.retired else f"{tag.name} is back in use."), tag

    return _tag_post(request, pk, forms.TagRetireForm, "retire_form", action)


@permission_required("catalog.delete_tag", raise_exception=True)
def tag_delete(request, pk: int):
    tag = get_object_or_404(Tag, pk=pk)
    form = forms.TagDeleteForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        name = tag.label()
        parent = Tag.objects.get_parent(tag)
        try:
            removed = services.tag_delete(
                tag=tag, merge_into=form.cleaned_data["merge_into"], confirm=form.cleaned_data["confirm"],
                user=request.user,
            )  # fmt: skip
        except services.CatalogError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            if form.cleaned_data["merge_into"]:
                messages.success(
                    request, f"Deleted {name}; its items moved to {form.cleaned_data['merge_into'].label()}."
                )
            else:
                messages.success(request, f"Deleted {name}; {removed} item tag(s) removed.")
            return redirect(parent.get_absolute_url() if parent else reverse("catalog:taxonomy"))
    affected = services.tag_delete_impact(tag=tag)
    return render(
        request,
        "catalog/tag_delete.html",
        {
            "tag": tag,
            "label": tag.label(),
            "form": form,
            "affected": affected[:500],
            "affected_count": len(affected),
        },
        status=400 if form.errors else 200,
    )


# --- Coverage ----------------------------------------------------------------------------


@permission_required("catalog.view_item", raise_exception=True)
def coverage(request):
    data = services.catalog_coverage()
    return render(
        request,
        "catalog/coverage.html",
        {
            "coverage": data,
            "facet_chart": charts.items_per_facet(data.per_facet),
            "missing_chart": charts.missing_share(data.missing),
            "rare_chart": charts.rare_tags(data.rare),
            "throughput_chart": charts.throughput(data.throughput),
        },
    )


# --- Import / export -----------------------------------------------------------------------


@permission_required("catalog.add_item", raise_exception=True)
def import_upload(request):
    form = forms.ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > settings.CATALOG_IMPORT_MAX_BYTES:
            limit = settings.CATALOG_IMPORT_MAX_BYTES // (1024 * 1024)
            form.add_error("file", f"The file is larger than the {limit} MB limit; split it.")
        else:
            try:
                job = imports.import_job_create(
                    data=upload.read(),
                    filename=upload.name,
                    strict=form.cleaned_data["strict"],
                    user=request.user,
                )
            except services.CatalogError as exc:
                form.add_error("file", str(exc))
            else:
                return redirect(job)
    jobs = ImportJob.objects.defer("data")[:10]
    return render(
        request, "catalog/import_form.html", {"form": form, "jobs": jobs}, status=400 if form.errors else 200
    )


@permission_required("catalog.add_item", raise_exception=True)
def import_detail(request, pk: int):
    job = get_object_or_404(ImportJob.objects.defer("data"), pk=pk)
    return render(request, "catalog/import_detail.html", {"job": job, "summary": job.summary})


@require_POST
@permission_required("catalog.add_item", raise_exception=True)
def import_apply(request, pk: int):
    job = get_object_or_404(ImportJob.objects.defer("data"), pk=pk)
    try:
        job = imports.import_job_start(job=job)
    except services.CatalogError as exc:
        messages.error(request, str(exc))
    else:
        if job.status == ImportJob.Status.SUCCEEDED:
            messages.success(request, f"Imported: {job.message}.")
        elif job.status == ImportJob.Status.FAILED:
            messages.error(request, f"Nothing was imported: {job.error}")
    return redirect("catalog:import_detail", pk=pk)


@permission_required("catalog.add_item", raise_exception=True)
def import_status(request, pk: int):
    job = get_object_or_404(ImportJob.objects.defer("data"), pk=pk)
    return JsonResponse(
        {
            "status": job.status,
            "progress": job.progress,
            "message": job.message,
            "error": job.error,
            "finished": job.is_finished,
        }
    )


@permission_required("catalog.view_item", raise_exception=True)
def export(request):
    fmt = "json" if request.GET.get("format") == "json" else "csv"
    kind = ImportJob.Kind.TAXONOMY if request.GET.get("kind") == "taxonomy" else ImportJob.Kind.ITEMS
    buffer = io.StringIO()
    imports.catalog_export(out=buffer, fmt=fmt, kind=kind)
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = HttpResponse(
        buffer.getvalue().encode("utf-8"),
        content_type="application/json" if fmt == "json" else "text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="recsite-{kind}-{stamp}.{fmt}"'
    return response
