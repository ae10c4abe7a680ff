"""List pages share one table behaviour: sortable column headers, the page's filters kept in
every link, and pagination.

A view declares its columns and hands the filtered queryset over::

    table = tables.table(request, items, ITEM_COLUMNS, default_sort="title")
    return render(request, "catalog/item_list.html", {"table": table, "page": table.page})

and the template renders the header cells with ``{% include "_table_head.html" %}`` inside its
``<thead><tr>`` (so a page can add its own cells, such as a select-all box). The sort order
travels in ``?sort=key`` (ascending) or ``?sort=-key`` (descending); an unknown key falls back
to the default, as a stale bookmark should. Only declared columns sort, by the ORM fields
they name, so the URL never reaches ``order_by`` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.db.models import F, QuerySet

PER_PAGE = 50


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    # ORM fields the column sorts by, first to last; empty: the column does not sort.
    ordering: tuple[str, ...] = ()
    numeric: bool = False  # right-aligned
    # The first click sorts descending: for counts and dates the biggest and the latest are
    # what people look for first.
    descending_first: bool = False


@dataclass(frozen=True)
class Header:
    column: Column
    direction: str | None  # "asc", "desc" or None when the table is not sorted by it
    url: str | None  # None when the column does not sort

    @property
    def aria_sort(self) -> str:
        return {"asc": "ascending", "desc": "descending"}.get(self.direction or "", "none")


@dataclass(frozen=True)
class Table:
    page: Page
    headers: list[Header]
    sort: str


def _parse_sort(value: str, columns: dict[str, Column], default: str) -> tuple[str, bool]:
    key, descending = (value[1:], True) if value.startswith("-") else (value, False)
    if key in columns and columns[key].ordering:
        return key, descending
    key, descending = (default[1:], True) if default.startswith("-") else (default, False)
    return key, descending


def table(
    request,
    queryset: QuerySet,
    columns: Sequence[Column],
    *,
    default_sort: str,
    per_page: int = PER_PAGE,
) -> Table:
    """Sort ``queryset`` by the requested column (primary key last, so pages are stable) and
    paginate it."""
    by_key = {c.key: c for c in columns}
    key, descending = _parse_sort(request.GET.get("sort", ""), by_key, default_sort)
    fields = by_key[key].ordering
    order = [F(f).desc(nulls_last=True) if descending else F(f).asc(nulls_first=True) for f in fields]
    queryset = queryset.order_by(*order, "-pk" if descending else "pk")
    page = Paginator(queryset, per_page).get_page(request.GET.get("page"))

    kept = [(k, v) for k, values in request.GET.lists() if k not in ("sort", "page") for v in values]
    headers = []
    for column in columns:
        if not column.ordering:
            headers.append(Header(column, None, None))
            continue
        current = column.key == key
        # A click on the sorted column flips it; another column starts in its first direction.
        if current:
            next_sort = column.key if descending else f"-{column.key}"
        else:
            next_sort = f"-{column.key}" if column.descending_first else column.key
        url = "?" + urlencode([*kept, ("sort", next_sort)])
        direction = ("desc" if descending else "asc") if current else None
        headers.append(Header(column, direction, url))
    return Table(page=page, headers=headers, sort=f"-{key}" if descending else key)
