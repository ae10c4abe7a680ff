"""Benchmark: import a 100,000-item CSV (items, 3 tags each on average) into an empty catalog.

    .venv/bin/python bench/catalog_import.py                       # SQLite in a temporary var dir
    .venv/bin/python bench/catalog_import.py --db postgres         # PostgreSQL (BENCH_DATABASE_URL)
    .venv/bin/python bench/catalog_import.py --items 20000

Prints the time to check the file (the preview), to apply it, and to re-import the same file
(every row unchanged), plus the command that reproduces the figures. Target: < 60 s.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/rs_catalog_bench"


def make_csv(n: int, seed: int = 7) -> bytes:
    """Items with a generated title/description and 1-5 tags from a 4-facet, ~200-tag taxonomy."""
    rng = np.random.default_rng(seed)
    facets = {"Genre": 80, "Mood": 40, "Theme": 60, "Audience": 20}
    paths = [f"{facet} > Group {g} > {facet} tag {t}" for facet, size in facets.items()
             for g in range(size // 10) for t in range(10)]  # fmt: skip
    # An array, not a list: rng.choice would convert a 5,000-string list on every call.
    words = np.array([f"word{w}" for w in range(5000)])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["external_id", "title", "description", "kind", "tags", "release_date", "image_url", "active"]
    )
    for i in range(n):
        tags = rng.choice(len(paths), size=int(rng.integers(1, 6)), replace=False)
        writer.writerow([
            f"b{i:06d}", f"Title {i} {words[i % 5000]}", " ".join(rng.choice(words, size=25)),
            "movie" if i % 3 else "series", "|".join(paths[t] for t in tags),
            f"{1980 + i % 45}-{1 + i % 12:02d}-{1 + i % 28:02d}", "", "true",
        ])  # fmt: skip
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()

    var_dir = tempfile.mkdtemp(prefix="rv-bench-import-")
    os.environ["RECSITE_VAR_DIR"] = var_dir
    if args.db == "postgres":
        url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG)
        _pg_create(url)
        os.environ["DATABASE_URL"] = url
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from catalog import imports
    from catalog.models import Item

    call_command("migrate", verbosity=0, skip_checks=True)
    assert not Item.objects.exists(), "the benchmark needs an empty catalog"

    data = make_csv(args.items)
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    timings, cpu = {}, {}
    start, cpu_start = time.perf_counter(), time.process_time()
    plan = imports.import_plan(data=data, filename="bench.csv")
    timings["check (preview)"] = time.perf_counter() - start
    cpu["check (preview)"] = time.process_time() - cpu_start
    assert plan.ok, plan.errors[:3]
    start, cpu_start = time.perf_counter(), time.process_time()
    phases: list[tuple[float, str]] = []
    counts = imports.import_apply(
        plan=plan, progress=lambda _p, m: phases.append((time.perf_counter() - start, m))
    )
    timings["apply"] = time.perf_counter() - start
    cpu["apply"] = time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    again = imports.import_apply(plan=imports.import_plan(data=data, filename="bench.csv"))
    timings["re-import unchanged (check + apply)"] = time.perf_counter() - start
    cpu["re-import unchanged (check + apply)"] = time.process_time() - cpu_start

    print(
        f"catalog import benchmark · {connection.vendor} · {args.items:,} items · "
        f"{len(data) / 1e6:.1f} MB CSV"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average at the start {load_start}, "
        f"at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"created {counts['created']:,} items, {counts['tags_created']:,} tags, "
        f"{counts['item_tags_added']:,} item tags"
    )
    print(f"re-import: {again['unchanged']:,} unchanged")
    for name, seconds in timings.items():
        print(f"  {name:<38} {seconds:7.1f} s  (CPU of this process {cpu[name]:.1f} s)")
    for seconds, message in phases:
        print(f"    at {seconds:6.1f} s: {message}")
    total = timings["check (preview)"] + timings["apply"]
    print(f"  {'first import total':<38} {total:7.1f} s  (target < 60 s: {'OK' if total < 60 else 'MISSED'})")
    print(f"reproduce: .venv/bin/python bench/catalog_import.py --db {args.db} --items {args.items}")


def _pg_create(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        # A fresh database each run: the benchmark measures an import into an empty catalog.
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
