"""``manage.py seed_demo``: load the demo catalog, people and 90 days of behaviour."""

from __future__ import annotations

import argparse
import time

from django.core.management.base import BaseCommand, CommandError

from recsite.demo import DemoDataError, demo_seed
from recsite.impact import impact_demo_seed


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


class Command(BaseCommand):
    help = (
        "Load deterministic demo data (taxonomy, catalog, profiles, events) into an empty database. "
        "Refuses when items already exist, unless --if-empty, which then does nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--seed", type=int, default=7, help="Random seed; the same seed gives the same data."
        )
        parser.add_argument(
            "--items", type=_positive, default=1200, help="Catalog size (about 8%% products)."
        )
        parser.add_argument("--profiles", type=_positive, default=2500, help="Number of people.")
        parser.add_argument("--events", type=_positive, default=220_000, help="Number of events.")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Load only if the catalog is empty; otherwise skip quietly.",
        )

    def handle(self, *args, **options):
        started = time.perf_counter()
        try:
            result = demo_seed(
                seed=options["seed"],
                items=options["items"],
                profiles=options["profiles"],
                events=options["events"],
                if_empty=options["if_empty"],
                stdout=self.stdout if options["verbosity"] > 1 else None,
            )
        except DemoDataError as exc:
            raise CommandError(
                f"{exc} Use --if-empty to skip instead, or start from an empty database."
            ) from exc
        if result["skipped"]:
            self.stdout.write("Demo data not loaded: the catalog already has items.")
            return
        # Recommendation clicks and impressions before some of the engagement, so the Business
        # impact page and the dashboard's attribution KPI have a history from the first start.
        impact_demo_seed()
        counts = ", ".join(
            f"{result[key]:,} {key.replace('_', ' ')}"
            for key in ("tags", "items", "item_tags", "profiles", "anonymous_ids", "events")
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded demo data (seed {options['seed']}): {counts} "
                f"in {time.perf_counter() - started:.1f} s "
                f"(generate {result['generate_seconds']:.1f} s, load {result['load_seconds']:.1f} s)."
            )
        )
