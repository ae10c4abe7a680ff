"""Business-impact refresh on the demo database: a full backfill and an incremental refresh.

Uses the database the settings point at (run `manage.py seed_demo` and
`manage.py seed_impact_demo` first), times `impact_compute` over the last N days (the four
grouped queries plus active profiles), then a full `impact_refresh` of those days and the
incremental refresh that follows it (the days of the attribution window only), and the
report read the page makes. Prints the figures, the row counts and the command.

    RECSITE_VAR_DIR=var .venv/bin/python bench/impact_refresh.py --days 30
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rs_demo .venv/bin/python bench/impact_refresh.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    import django

    django.setup()
    from django.db import connection

    from personalization.models import Event
    from recsite import impact
    from recsite.models import ImpactRefresh, RecommendationImpression

    today = datetime.now(UTC).date()
    day_from = today - timedelta(days=args.days - 1)
    since = datetime.combine(day_from, datetime.min.time(), tzinfo=UTC)
    events = Event.objects.filter(timestamp__gte=since).count()
    impressions = RecommendationImpression.objects.filter(served_at__gte=since).count()
    started = time.perf_counter()
    rows = impact.impact_compute(day_from=day_from, day_to=today)
    compute = time.perf_counter() - started
    ImpactRefresh.objects.filter(status="running").delete()
    started = time.perf_counter()
    full = impact.impact_refresh(day_from=day_from, day_to=today)
    refresh = time.perf_counter() - started
    started = time.perf_counter()
    incremental = impact.impact_refresh()
    incremental_s = time.perf_counter() - started
    started = time.perf_counter()
    impact.impact_report(day_from=day_from, day_to=today, by="placement").as_dict()
    report = time.perf_counter() - started
    print(
        f"database: {connection.vendor}; {events:,} events and {impressions:,} impressions "
        f"in {args.days} days"
    )
    print(f"impact_compute {args.days} days: {compute:.2f} s ({len(rows)} daily figures)")
    print(f"impact_refresh {args.days} days (compute + replace): {refresh:.2f} s ({full.rows} rows)")
    print(
        f"incremental refresh ({incremental.day_from}..{incremental.day_to}): {incremental_s:.2f} s "
        f"({incremental.rows} rows)"
    )
    print(f"impact_report read ({args.days} days, by placement): {report * 1000:.1f} ms")
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print("command: .venv/bin/python bench/impact_refresh.py --days", args.days)


if __name__ == "__main__":
    main()
