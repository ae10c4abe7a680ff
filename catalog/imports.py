"""Catalog import and export services (split from services.py: one sub-domain, same layer).

An import is two steps so the UI can show a preview: :func:`import_plan` decodes and checks a
file without writing anything (rows to create and update, tags to create, errors with line
numbers), and :func:`import_apply` writes a clean plan in one transaction, all or nothing.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import re
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone
from django.utils.text import slugify

from recsite import outbox

from .models import ImportJob, Item, ItemTag, ItemTagChange, Tag, TagAlias
from .services import FORBIDDEN_IN_NAMES, CatalogError, path_parts, path_slug, tag_labels

logger = logging.getLogger(__name__)

ITEM_COLUMNS = ["external_id", "title", "description", "kind", "tags", "release_date", "image_url", "active"]
REQUIRED_COLUMNS = {"external_id", "title"}
TAXONOMY_COLUMNS = ["path", "description"]
TRUE = {"1", "true", "yes", "y", "on"}
FALSE = {"0", "false", "no", "n", "off"}
BATCH = 2000
MAX_ERRORS = 200  # a file with thousands of bad rows reports the first ones

Progress = Callable[[int, str], None]


class ImportFileError(CatalogError):
    """The file cannot be read at all (encoding, format, size)."""


@dataclass
class RowError:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


@dataclass
class ItemRow:
    line: int
    external_id: str
    title: str
    description: str = ""
    kind: str = "movie"
    tags: list[str] | None = None  # human paths; None = the file has no tags column
    release_date: date | None = None
    image_url: str = ""
    active: bool = True


@dataclass
class Plan:
    kind: str
    rows: list = field(default_factory=list)  # ItemRow, or (line, path, description) for taxonomy
    errors: list[RowError] = field(default_factory=list)
    to_create: int = 0
    to_update: int = 0
    unchanged: int = 0
    new_tags: list[str] = field(default_factory=list)
    encoding: str = "utf-8"

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict:
        return {
            "kind": self.kind,
            "rows": len(self.rows),
            "to_create": self.to_create,
            "to_update": self.to_update,
            "unchanged": self.unchanged,
            "new_tags": self.new_tags[:200],
            "new_tag_count": len(self.new_tags),
            "errors": [
                {"line": e.line, "field": e.field, "message": e.message} for e in self.errors[:MAX_ERRORS]
            ],
            "error_count": len(self.errors),
            "encoding": self.encoding,
        }

    def error(self, line: int, field_name: str | None, message: str) -> None:
        self.errors.append(RowError(line, field_name, message))


# --- Reading -------------------------------------------------------------------------------


def decode(data: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM) or Latin-1; anything else is refused with a clear error."""
    if len(data) > settings.CATALOG_IMPORT_MAX_BYTES:
        limit = settings.CATALOG_IMPORT_MAX_BYTES // (1024 * 1024)
        raise ImportFileError(f"The file is larger than the {limit} MB limit; split it.", field="file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise ImportFileError(
            "The file looks like UTF-16 or binary; save it as UTF-8 or Latin-1 text.", field="file"
        )
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    text = data.decode("latin-1")
    # Latin-1 maps 0x80-0x9F to control characters that never occur in real text: the file is
    # in some other encoding (Windows-1252, Mac Roman...), and guessing would corrupt titles.
    bad = re.search(r"[\x80-\x9f]", text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise ImportFileError(
            f"line {line}: the file is neither UTF-8 nor Latin-1 (byte 0x{ord(bad.group()):02x}); "
            "save it as UTF-8.",
            field="file",
        )
    return text, "latin-1"


def _detect_format(text: str, filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix in (".json", ".csv"):
        return suffix[1:]
    return "json" if text.lstrip()[:1] in ("[", "{") else "csv"


def detect_kind(text: str, fmt: str) -> str:
    """Taxonomy files have a ``path`` column (CSV) or are a list of paths (JSON)."""
    if fmt == "csv":
        header = next(csv.reader(io.StringIO(text)), [])
        names = {h.strip().lower() for h in header}
        return (
            ImportJob.Kind.TAXONOMY
            if "path" in names and "external_id" not in names
            else ImportJob.Kind.ITEMS
        )
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return ImportJob.Kind.ITEMS
    if isinstance(parsed, dict):
        return ImportJob.Kind.TAXONOMY if "taxonomy" in parsed else ImportJob.Kind.ITEMS
    first = parsed[0] if isinstance(parsed, list) and parsed else None
    return ImportJob.Kind.TAXONOMY if isinstance(first, str) or (
        isinstance(first, dict) and "path" in first and "external_id" not in first
    ) else ImportJob.Kind.ITEMS  # fmt: skip


def _records(text: str, fmt: str, plan: Plan) -> Iterator[tuple[int, dict]]:
    """(line number, raw record) pairs. JSON records are numbered from 1 in file order."""
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            plan.error(1, None, "The file is empty.")
            return
        except csv.Error as exc:
            plan.error(1, None, f"unreadable CSV header ({exc}).")
            return
        names = [h.strip().lower() for h in header]
        expected = ITEM_COLUMNS if plan.kind == ImportJob.Kind.ITEMS else TAXONOMY_COLUMNS
        unknown = [n for n in names if n not in expected]
        if unknown:
            plan.error(1, None, f"unknown column(s) {', '.join(unknown)}; expected {', '.join(expected)}.")
            return
        required = REQUIRED_COLUMNS if plan.kind == ImportJob.Kind.ITEMS else {"path"}
        missing = sorted(required - set(names))
        if missing:
            plan.error(1, None, f"missing column(s) {', '.join(missing)}.")
            return
        line = reader.line_num
        while True:
            start = line + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                plan.error(start, None, f"malformed CSV ({exc}).")
                return
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                plan.error(start, None, f"expected {len(names)} values, found {len(values)}.")
                continue
            yield start, dict(zip(names, values, strict=True))
        return
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError) as exc:
        plan.error(getattr(exc, "lineno", 0), None, f"invalid JSON ({exc}).")
        return
    key = "items" if plan.kind == ImportJob.Kind.ITEMS else "taxonomy"
    if isinstance(parsed, dict):
        parsed = parsed.get(key)
    if not isinstance(parsed, list):
        plan.error(0, None, f"expected a JSON list of {key} (or an object with an {key!r} list).")
        return
    for n, record in enumerate(parsed, start=1):
        if plan.kind == ImportJob.Kind.TAXONOMY and isinstance(record, str):
            record = {"path": record}
        if not isinstance(record, dict):
            plan.error(n, None, "each entry must be a JSON object.")
            continue
        yield n, {str(k).lower(): v for k, v in record.items()}


def _text(value) -> str:
    return "" if value is None else str(value).strip()


_url = URLValidator()


def _item_row(line: int, raw: dict, plan: Plan) -> ItemRow | None:
    errors_before = len(plan.errors)
    external_id = _text(raw.get("external_id"))
    title = _text(raw.get("title"))
    if not external_id:
        plan.error(line, "external_id", "required.")
    elif len(external_id) > 200:
        plan.error(line, "external_id", "longer than 200 characters.")
    if not title:
        plan.error(line, "title", "required.")
    elif len(title) > 500:
        plan.error(line, "title", "longer than 500 characters.")
    kind = _text(raw.get("kind")) or "movie"
    if not _kind_ok(kind):
        plan.error(line, "kind", f"{kind!r} is not a short slug such as movie or series.")
    release = None
    if value := _text(raw.get("release_date")):
        try:
            release = date.fromisoformat(value)
        except ValueError:
            plan.error(line, "release_date", f"{value!r} is not a date (YYYY-MM-DD).")
    image_url = _text(raw.get("image_url"))
    if image_url:
        try:
            _url(image_url)
        except ValidationError:
            plan.error(line, "image_url", f"{image_url!r} is not a URL.")
    active = True
    value = raw.get("active")
    if isinstance(value, bool):
        active = value
    elif flag := _text(value).lower():
        if flag in FALSE:
            active = False
        elif flag not in TRUE:
            plan.error(line, "active", f"{value!r} is not true or false.")
    tags = None
    if "tags" in raw:
        value = raw["tags"]
        labels = value if isinstance(value, list) else _text(value).split("|")
        tags = []
        for label in labels:
            label = _text(label)
            if not label:
                continue
            normalised, problem = _label_check(label)
            if problem:
                plan.error(line, "tags", f"{label!r} {problem}")
            else:
                tags.append(normalised)
    if len(plan.errors) > errors_before:
        return None
    return ItemRow(
        line, external_id, title, _text(raw.get("description")), kind, tags, release, image_url, active
    )


@functools.lru_cache(maxsize=1024)
def _kind_ok(kind: str) -> bool:
    """Cached: every row of a file has one of a handful of kinds, and slugify is not cheap."""
    return slugify(kind) == kind and len(kind) <= 50


@functools.lru_cache(maxsize=100_000)
def _label_check(label: str) -> tuple[str, str | None]:
    """A human tag path normalised ("Genre > Anime"), or the problem with it. Cached: a 100,000-row
    file repeats the same few hundred paths."""
    parts = path_parts(label)
    if any(not slugify(p, allow_unicode=True) for p in parts):
        return label, "has an empty level."
    if any(len(p) > 100 for p in parts):
        return label, "has a level longer than 100 characters."
    return " > ".join(parts), None


class _TagIndex:
    """Resolves human paths to tags: exact label, then slug path, then alias."""

    def __init__(self) -> None:
        labels = tag_labels()
        self.by_label = {label.lower(): pk for pk, label in labels.items()}
        self.by_slug = dict(Tag.objects.values_list("slug_path", "pk"))
        self.by_alias = dict(TagAlias.objects.values_list("slug_path", "tag_id"))

        self.found: dict[str, int | None] = {}  # a file repeats the same few hundred paths

    def find(self, label: str) -> int | None:
        if label in self.found:
            return self.found[label]
        pk = self.by_label.get(label.lower())
        if pk is None:
            slug = _slug(label)
            pk = self.by_slug.get(slug) or self.by_alias.get(slug)
        self.found[label] = pk
        return pk

    def add(self, label: str, tag: Tag) -> None:
        self.by_label[label.lower()] = tag.pk
        self.by_slug[tag.slug_path] = tag.pk
        self.found.clear()


@functools.lru_cache(maxsize=100_000)
def _slug(label: str) -> str:
    return path_slug(label)


def import_plan(*, data: bytes, filename: str = "", strict: bool = False, kind: str | None = None) -> Plan:
    """Decode and check a file; nothing is written. Errors carry line numbers."""
    text, encoding = decode(data)
    fmt = _detect_format(text, filename)
    plan = Plan(kind=kind or detect_kind(text, fmt), encoding=encoding)
    if plan.kind == ImportJob.Kind.TAXONOMY:
        return _taxonomy_plan(text, fmt, plan)
    index = _TagIndex()
    seen: dict[str, int] = {}
    new_tags: dict[str, int] = {}
    for line, raw in _records(text, fmt, plan):
        row = _item_row(line, raw, plan)
        if row is None:
            continue
        if row.external_id in seen:
            plan.error(line, "external_id", f"{row.external_id!r} is also on line {seen[row.external_id]}.")
            continue
        seen[row.external_id] = line
        unknown = [t for t in row.tags or () if index.find(t) is None]
        if unknown and strict:
            plan.error(line, "tags", f"unknown tag path(s): {', '.join(unknown)} (strict mode).")
            continue
        for label in unknown:
            new_tags.setdefault(_slug(label), label)
        plan.rows.append(row)
    existing = {ext for (ext,) in _select_in(Item, "external_id", list(seen), ["external_id"])}
    plan.to_update = sum(1 for r in plan.rows if r.external_id in existing)
    plan.to_create = len(plan.rows) - plan.to_update
    plan.new_tags = sorted(new_tags.values())
    return plan


def _taxonomy_plan(text: str, fmt: str, plan: Plan) -> Plan:
    index = _TagIndex()
    seen: dict[str, int] = {}
    for line, raw in _records(text, fmt, plan):
        label = _text(raw.get("path"))
        parts = path_parts(label) if label else []
        if not parts or any(not slugify(p, allow_unicode=True) for p in parts):
            plan.error(line, "path", "a path such as “Genre > Anime > Mecha” is required.")
            continue
        if any(c in p for p in parts for c in FORBIDDEN_IN_NAMES if c != ">"):
            plan.error(line, "path", "tag names cannot contain “|”.")
            continue
        label = " > ".join(parts)
        slug = path_slug(label)
        if slug in seen:
            plan.error(line, "path", f"{label!r} is also on line {seen[slug]}.")
            continue
        seen[slug] = line
        plan.rows.append((line, label, _text(raw.get("description"))))
        if index.find(label) is None:
            plan.new_tags.append(label)
            plan.to_create += 1
        else:
            plan.to_update += 1
    return plan


# --- Writing -------------------------------------------------------------------------------


def _ensure_tags(labels: list[str], index: _TagIndex) -> dict[str, int]:
    """Tag ids for human paths, creating missing levels, parents first."""
    wanted: set[str] = set()
    for label in set(labels):
        parts = path_parts(label)
        wanted.update(" > ".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    missing: dict[int, dict[str | None, list[str]]] = defaultdict(lambda: defaultdict(list))
    for label in wanted:
        if index.find(label) is None:
            parts = path_parts(label)
            missing[len(parts)][" > ".join(parts[:-1]) or None].append(label)
    for depth in sorted(missing):
        for parent_label, children in missing[depth].items():
            parent = Tag.objects.get(pk=index.find(parent_label)) if parent_label else None
            has_siblings = parent.numchild if parent else Tag.objects.filter(depth=1).exists()
            children.sort(key=lambda lb: path_parts(lb)[-1])  # treebeard keeps siblings in name order
            if has_siblings:
                # Sorted insertion next to existing siblings (treebeard renumbers as needed).
                for label in children:
                    name = path_parts(label)[-1]
                    fields = {"name": name, "slug": slugify(name, allow_unicode=True)}
                    node = Tag.objects.add_child(parent, fields) if parent else Tag.objects.add_root(fields)
                    index.add(label, node)
                    parent = Tag.objects.get(pk=parent.pk) if parent else None
            else:
                # A parent without children: number them ourselves, in one insert.
                base = parent.path if parent else ""
                nodes = []
                for n, label in enumerate(children, start=1):
                    name = path_parts(label)[-1]
                    slug = slugify(name, allow_unicode=True)
                    nodes.append(
                        Tag(path=Tag._get_path(base, depth, n), depth=depth, numchild=0, name=name, slug=slug,
                            slug_path=f"{parent.slug_path}/{slug}" if parent else slug)
                    )  # fmt: skip
                Tag.objects.bulk_create(nodes)
                if parent:
                    Tag.objects.filter(pk=parent.pk).update(numchild=len(nodes))
                created = dict(Tag.objects.filter(path__in=[n.path for n in nodes]).values_list("path", "pk"))
                for label, node in zip(children, nodes, strict=True):
                    node.pk = created[node.path]
                    index.add(label, node)
    return {label: index.find(label) for label in set(labels)}


def import_apply(
    *, plan: Plan, user: AbstractBaseUser | None = None, progress: Progress | None = None
) -> dict[str, int]:
    """Write a clean plan in one transaction. Returns counts."""
    if not plan.ok:
        raise CatalogError(f"The file has {len(plan.errors)} error(s); nothing was imported.", field="file")
    say = progress or (lambda _p, _m: None)
    with _large_page_cache(), transaction.atomic():
        if plan.kind == ImportJob.Kind.TAXONOMY:
            return _taxonomy_apply(plan)
        return _items_apply(plan, user, say)


@contextlib.contextmanager
def _large_page_cache(mebibytes: int = 256) -> Iterator[None]:
    """SQLite only: a large page cache for the import, the previous size restored afterwards.

    With the default 2 MiB, inserting 300,000 item tags and history rows into their indexes
    (in tag order, not key order) keeps evicting and re-reading index pages."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        previous = int(cursor.fetchone()[0])
        cursor.execute(f"PRAGMA cache_size = {-1024 * mebibytes}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {previous}")


def _taxonomy_apply(plan: Plan) -> dict[str, int]:
    index = _TagIndex()
    before = Tag.objects.count()
    ids = _ensure_tags([label for _, label, _ in plan.rows], index)
    described = 0
    for _, label, description in plan.rows:
        if description:
            described += (
                Tag.objects.filter(pk=ids[label])
                .exclude(description=description)
                .update(description=description)
            )
    return {"tags_created": Tag.objects.count() - before, "descriptions_updated": described}


def _insert_rows(model, fields: list[str], rows: Iterable[tuple], *, ignore_conflicts: bool = False) -> int:
    """INSERT many rows with one prepared statement (executemany): an order of magnitude faster
    than ``bulk_create`` for 100,000-row imports. Dates, datetimes and JSON are adapted by the
    backend as the ORM would; auto fields such as ``created_at`` must be given explicitly."""
    opts = model._meta
    field_objs = [opts.get_field(f) for f in fields]
    on_conflict = OnConflict.IGNORE if ignore_conflicts else None
    columns = ", ".join(connection.ops.quote_name(f.column) for f in field_objs)
    suffix = (
        connection.ops.on_conflict_suffix_sql(field_objs, on_conflict, None, None) if ignore_conflicts else ""
    )
    table = connection.ops.quote_name(opts.db_table)
    sql = (
        f"{connection.ops.insert_statement(on_conflict=on_conflict)} {table} "
        f"({columns}) VALUES ({', '.join(['%s'] * len(fields))}) {suffix}"
    )
    adapt = _row_adapter(field_objs)
    count = 0
    if connection.vendor == "postgresql" and not ignore_conflicts:
        # COPY streams rows in one statement: executemany would cost a round trip per row.
        statement = f"COPY {table} ({columns}) FROM STDIN"
        with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(adapt(row))
                count += 1
        return count
    with connection.cursor() as cursor:
        for chunk in _chunked(rows, BATCH * 5):
            cursor.executemany(sql, [adapt(row) for row in chunk])
            count += len(chunk)
    return count


def _update_rows(model, fields: list[str], rows: Iterable[tuple]) -> None:
    """UPDATE rows by primary key; each row is (*values, pk)."""
    opts = model._meta
    field_objs = [opts.get_field(f) for f in fields]
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in field_objs)
    sql = f"UPDATE {connection.ops.quote_name(opts.db_table)} SET {assignments} WHERE id = %s"
    adapt = _row_adapter([*field_objs, opts.pk])
    with connection.cursor() as cursor:
        for chunk in _chunked(rows, BATCH * 5):
            cursor.executemany(sql, [adapt(row) for row in chunk])


def _row_adapter(field_objs) -> Callable[[Sequence], Sequence]:
    """Adapts one row's values for the backend. Only dates, datetimes and JSON need its help;
    the other columns pass through untouched, which matters at 700,000 rows per import."""
    conn = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the thread-local proxy
    special: list[tuple[int, Callable]] = []
    for n, f in enumerate(field_objs):
        kind = f.get_internal_type()
        if kind == "DateTimeField":
            # Many rows share one timestamp (the import's "now"): adapt each value once.
            special.append((n, functools.lru_cache(maxsize=4096)(conn.ops.adapt_datetimefield_value)))
        elif kind == "DateField":
            special.append((n, functools.lru_cache(maxsize=4096)(conn.ops.adapt_datefield_value)))
        elif kind == "JSONField":
            empty = f.get_db_prep_save({}, conn)  # nearly every row: serialise it once
            special.append((n, lambda v, f=f, empty=empty: empty if v == {} else f.get_db_prep_save(v, conn)))
    if not special:
        return lambda row: row

    def adapt(row: Sequence) -> list:
        values = list(row)
        for n, prepare in special:
            values[n] = prepare(values[n])
        return values

    return adapt


def _chunked(rows: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _select_in(model, key: str, values: list, columns: list[str]) -> list[tuple]:
    """The ``columns`` of the rows whose ``key`` is one of ``values``, in raw SQL: the ORM's
    ``__in`` prepares every value through the field, which took a third of the time to check a
    100,000-row file. (SQLite's converters still turn dates and booleans into Python values.)"""
    opts = model._meta
    quote = connection.ops.quote_name
    select = (
        f"SELECT {', '.join(quote(opts.get_field(c).column) for c in columns)} "
        f"FROM {quote(opts.db_table)} WHERE {quote(opts.get_field(key).column)}"
    )
    if connection.vendor == "postgresql":
        queries = [(f"{select} = ANY(%s)", [values])] if values else []
    else:
        size = min(connection.features.max_query_params or 999, 5000)
        queries = [(f"{select} IN ({', '.join(['%s'] * len(c))})", c) for c in _chunked(values, size)]
    found: list[tuple] = []
    with connection.cursor() as cursor:
        for sql, params in queries:
            cursor.execute(sql, params)
            found.extend(cursor.fetchall())
    return found


ITEM_FIELDS = ["title", "description", "kind", "release_date", "image_url", "active"]


def _items_apply(plan: Plan, user: AbstractBaseUser | None, say: Progress) -> dict[str, int]:
    rows: list[ItemRow] = plan.rows
    index = _TagIndex()
    tags_before = Tag.objects.count()
    tag_ids = _ensure_tags([t for r in rows for t in r.tags or ()], index)
    say(10, "Tags ready")
    existing: dict[str, tuple] = {
        values[0]: values[1:]
        for values in _select_in(
            Item, "external_id", [r.external_id for r in rows], ["external_id", "id", *ITEM_FIELDS]
        )
    }
    now = timezone.now()
    fresh = [r for r in rows if r.external_id not in existing]
    created = _insert_rows(
        Item,
        ["external_id", *ITEM_FIELDS, "metadata", "created_at", "updated_at"],
        ((r.external_id, r.title, r.description, r.kind, r.release_date, r.image_url, r.active, {}, now, now)
         for r in fresh),
    )  # fmt: skip
    say(40, f"{created:,} items created")
    changed = []
    for r in rows:
        if r.external_id not in existing:
            continue
        pk, *current = existing[r.external_id]
        values = [r.title, r.description, r.kind, r.release_date, r.image_url, r.active]
        if values != current:
            changed.append((*values, now, pk))
    _update_rows(Item, [*ITEM_FIELDS, "updated_at"], changed)
    say(60, f"{len(changed):,} items updated")
    pks = {ext: values[0] for ext, values in existing.items()}
    pks.update(_select_in(Item, "external_id", [r.external_id for r in fresh], ["external_id", "id"]))
    added, removed = _item_tags_sync(rows, pks, tag_ids, user, say)
    say(95, "Tags applied")
    return {
        "created": created,
        "updated": len(changed),
        "unchanged": len(rows) - created - len(changed),
        "tags_created": Tag.objects.count() - tags_before,
        "item_tags_added": added,
        "item_tags_removed": removed,
    }


def _item_tags_sync(
    rows: list[ItemRow],
    pks: dict[str, int],
    tag_ids: dict[str, int],
    user: AbstractBaseUser | None,
    say: Progress,
) -> tuple[int, int]:
    """Rows with a tags column get exactly the listed tags (history records each change)."""
    wanted: dict[int, set[int]] = {}
    for r in rows:
        if r.tags is not None:
            wanted[pks[r.external_id]] = {tag_ids[t] for t in r.tags}
    if not wanted:
        return 0, 0
    current: dict[int, set[int]] = defaultdict(set)
    for item_id, tag_id in _select_in(ItemTag, "item", list(wanted), ["item", "tag"]):
        current[item_id].add(tag_id)
    adds = [(i, t) for i, tags in wanted.items() for t in sorted(tags - current[i])]
    removes = [(i, t) for i, tags in wanted.items() for t in sorted(current[i] - tags)]
    user_id = user.pk if user is not None and user.is_authenticated else None
    now = timezone.now()
    _insert_rows(
        ItemTag,
        ["item_id", "tag_id", "source", "created_by_id", "created_at"],
        ((i, t, ItemTag.Source.IMPORT, user_id, now) for i, t in adds),
    )
    say(75, f"{len(adds):,} item tags added")
    if removes:
        by_tag: dict[int, list[int]] = defaultdict(list)
        for i, t in removes:
            by_tag[t].append(i)
        for t, item_ids in by_tag.items():
            for start in range(0, len(item_ids), 5000):
                ItemTag.objects.filter(tag_id=t, item_id__in=item_ids[start : start + 5000]).delete()
    labels = tag_labels()
    _insert_rows(
        ItemTagChange,
        ["item_id", "tag_id", "tag_label", "action", "source", "user_id", "created_at"],
        ((i, t, labels.get(t, ""), action, ItemTag.Source.IMPORT, user_id, now)
         for action, pairs in (("add", adds), ("remove", removes))
         for i, t in pairs),
    )  # fmt: skip
    return len(adds), len(removes)


# --- Jobs (the UI path) ------------------------------------------------------------------------


def import_job_create(
    *, data: bytes, filename: str, strict: bool = False, user: AbstractBaseUser | None = None
) -> ImportJob:
    """Store the upload and its preview. Unreadable files raise ImportFileError (shown as a form error)."""
    plan = import_plan(data=data, filename=filename, strict=strict)
    return ImportJob.objects.create(
        kind=plan.kind, filename=filename[:300], data=data, strict=strict, summary=plan.summary(),
        created_by=user if user is not None and user.is_authenticated else None,
        message="Checked: review the preview, then apply.",
    )  # fmt: skip


def import_job_start(*, job: ImportJob) -> ImportJob:
    """Apply a previewed job: inline when small, on a worker (heavy queue) when large."""
    from .tasks import import_job_execute

    if job.summary.get("error_count"):
        raise CatalogError("Fix the errors in the file and upload it again.", field="file")
    if not ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.PREVIEWED).update(
        status=ImportJob.Status.QUEUED, message="Waiting for a worker"
    ):
        raise CatalogError("This import was already started.", field="job")
    if job.summary.get("rows", 0) <= settings.CATALOG_IMPORT_INLINE_ROWS:
        return import_job_execute_now(job_id=job.pk)
    outbox.enqueue(import_job_execute, job.pk)
    job.refresh_from_db()
    return job


def import_job_execute_now(*, job_id: int) -> ImportJob:
    """Run a queued job (idempotent: a job that is not queued is left alone)."""
    if not ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, progress=1, message="Checking the file again"
    ):
        return ImportJob.objects.get(pk=job_id)
    job = ImportJob.objects.get(pk=job_id)

    def progress(percent: int, message: str) -> None:
        ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.RUNNING).update(
            progress=percent, message=message[:300]
        )

    try:
        # Re-plan: the catalog may have changed since the preview.
        plan = import_plan(data=bytes(job.data), filename=job.filename, strict=job.strict, kind=job.kind)
        counts = import_apply(plan=plan, user=job.created_by, progress=progress)
    except Exception as exc:
        logger.exception("import job %s failed", job_id)
        message = str(exc) if isinstance(exc, CatalogError) else "".join(
            traceback.format_exception_only(type(exc), exc)
        ).strip()  # fmt: skip
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.FAILED, error=message, message="Failed: nothing was imported",
            finished_at=timezone.now(),
        )  # fmt: skip
    else:
        ImportJob.objects.filter(pk=job_id).update(
            status=ImportJob.Status.SUCCEEDED, progress=100, finished_at=timezone.now(),
            summary={**job.summary, "result": counts}, message=counts_message(counts),
        )  # fmt: skip
    return ImportJob.objects.get(pk=job_id)


def counts_message(counts: dict[str, int]) -> str:
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items())


# --- Export --------------------------------------------------------------------------------


def _item_records() -> Iterator[dict]:
    labels = tag_labels()
    tags: dict[int, list[str]] = defaultdict(list)
    for item_id, tag_id in ItemTag.objects.values_list("item_id", "tag_id").iterator(chunk_size=20_000):
        tags[item_id].append(labels[tag_id])
    for item in Item.objects.order_by("external_id").iterator(chunk_size=5000):
        yield {
            "external_id": item.external_id,
            "title": item.title,
            "description": item.description,
            "kind": item.kind,
            "tags": sorted(tags.get(item.pk, [])),
            "release_date": item.release_date.isoformat() if item.release_date else "",
            "image_url": item.image_url,
            "active": item.active,
        }


def catalog_export(*, out: io.TextIOBase, fmt: str = "csv", kind: str = ImportJob.Kind.ITEMS) -> int:
    """Write items (or the taxonomy) as CSV or JSON in the import format. Returns the row count."""
    if kind == ImportJob.Kind.TAXONOMY:
        labels = tag_labels()
        records = [
            {"path": labels[pk], "description": description}
            for pk, description in Tag.objects.order_by("path").values_list("pk", "description")
        ]
        columns = TAXONOMY_COLUMNS
    else:
        records = _item_records()
        columns = ITEM_COLUMNS
    count = 0
    if fmt == "json":
        rows = list(records)
        json.dump(rows, out, ensure_ascii=False, indent=1)
        return len(rows)
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        if "tags" in record:
            record = {
                **record,
                "tags": "|".join(record["tags"]),
                "active": "true" if record["active"] else "false",
            }
        writer.writerow(record)
        count += 1
    return count


# --- MovieLens -----------------------------------------------------------------------------

YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
ML_SOURCE = "movielens"


def _ml_title(raw: str) -> tuple[str, int | None]:
    match = YEAR.search(raw)
    if not match:
        return raw.strip(), None
    return raw[: match.start()].strip(), int(match.group(1))


def movielens_themes(rows: list[tuple[str, str]], *, min_movies: int = 3) -> dict[str, tuple[str, set[str]]]:
    """Normalise free-text tags (case, whitespace, duplicates) keeping those on ``min_movies``
    distinct movies. ``rows`` are (movie id, raw tag); returns slug -> (display name, movie ids)."""
    movies: dict[str, set[str]] = defaultdict(set)
    spellings: dict[str, Counter] = defaultdict(Counter)
    for movie_id, raw in rows:
        name = " ".join(raw.replace("|", " ").replace(">", " ").split())
        slug = slugify(name, allow_unicode=True)
        if not slug or len(name) > 100:
            continue
        movies[slug].add(movie_id)
        spellings[slug][name.lower()] += 1
    themes = {}
    for slug, ids in movies.items():
        if len(ids) >= min_movies:
            name = spellings[slug].most_common(1)[0][0]
            themes[slug] = (name[:1].upper() + name[1:], ids)
    return themes


def movielens_import(
    *,
    directory: Path,
    min_tag_movies: int = 3,
    ratings: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """movies.csv -> items (year from the title), genres -> Genre facet, tags.csv -> Theme
    facet, ratings.csv -> rate events (value = rating, original timestamp). Idempotent."""
    from personalization.models import Event, Profile
    from personalization.models import Source as EventSource

    say = say or (lambda _m: None)
    directory = Path(directory)
    movies_path = directory / "movies.csv"
    if not movies_path.exists():
        raise CatalogError(f"{movies_path} not found: expected the MovieLens CSV layout.", field="directory")
    with movies_path.open(encoding="utf-8", newline="") as f:
        movies = list(csv.DictReader(f))
    tag_rows: list[tuple[str, str]] = []
    if (directory / "tags.csv").exists():
        with (directory / "tags.csv").open(encoding="utf-8", newline="") as f:
            tag_rows = [(r["movieId"], r["tag"]) for r in csv.DictReader(f)]
    themes = movielens_themes(tag_rows, min_movies=min_tag_movies)
    themes_of: dict[str, list[str]] = defaultdict(list)
    for name, ids in themes.values():
        for movie_id in ids:
            themes_of[movie_id].append(f"Theme > {name}")
    rows = []
    for n, m in enumerate(movies, start=2):
        title, year = _ml_title(m["title"])
        genres = [g for g in m["genres"].split("|") if g and g != "(no genres listed)"]
        rows.append(
            ItemRow(
                line=n, external_id=f"ml-{m['movieId']}", title=title or m["title"], kind="movie",
                release_date=date(year, 1, 1) if year else None,
                tags=sorted({f"Genre > {g}" for g in genres} | set(themes_of.get(m["movieId"], []))),
            )
        )  # fmt: skip
    plan = Plan(kind=ImportJob.Kind.ITEMS, rows=rows)
    counts = import_apply(plan=plan)
    say(f"items: {counts['created']:,} created, {counts['updated']:,} updated; themes: {len(themes)}")
    counts["events"] = 0
    if ratings and (directory / "ratings.csv").exists():
        source, _ = EventSource.objects.get_or_create(name=ML_SOURCE)
        item_ids = dict(Item.objects.filter(external_id__startswith="ml-").values_list("external_id", "pk"))
        with (directory / "ratings.csv").open(encoding="utf-8", newline="") as f:
            ratings_rows = list(csv.DictReader(f))
        users = sorted({r["userId"] for r in ratings_rows}, key=int)
        wanted = [f"ml-user-{u}" for u in users]
        with transaction.atomic():
            profiles: dict[str, int] = {}
            for chunk in _chunked(wanted, 5000):
                profiles.update(
                    Profile.objects.filter(external_id__in=chunk).values_list("external_id", "pk")
                )
            Profile.objects.bulk_create(
                [Profile(external_id=e) for e in wanted if e not in profiles],
                batch_size=BATCH,
                ignore_conflicts=True,
            )
            for chunk in _chunked([e for e in wanted if e not in profiles], 5000):
                profiles.update(
                    Profile.objects.filter(external_id__in=chunk).values_list("external_id", "pk")
                )
            before = Event.objects.filter(source=source).count()

            def events() -> Iterator[tuple]:
                for r in ratings_rows:
                    item_id = item_ids.get(f"ml-{r['movieId']}")
                    if item_id is None:
                        continue
                    when = datetime.fromtimestamp(int(r["timestamp"]), tz=UTC)
                    yield (
                        source.pk, f"ml-rating-{r['userId']}-{r['movieId']}", "Movie Rated", Event.Type.RATE,
                        profiles[f"ml-user-{r['userId']}"], item_id, float(r["rating"]), {}, when, when,
                    )  # fmt: skip

            # message_id is deterministic, so a re-import skips what is already there.
            _insert_rows(
                Event,
                ["source_id", "message_id", "name", "type", "profile_id", "item_id", "value", "properties",
                 "timestamp", "received_at"],
                events(),
                ignore_conflicts=True,
            )  # fmt: skip
            counts["events"] = Event.objects.filter(source=source).count() - before
        say(f"ratings: {counts['events']:,} new rate events (ones already imported are skipped)")
    return counts
