"""Analyse per-variant sufficient statistics gathered elsewhere: ``analyze_summary FILE.json``."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from experiments import stats


class Command(BaseCommand):
    help = (
        "Read per-variant sufficient statistics (n, sum, sum_sq; sum_y, sum_y_sq, sum_xy for ratio and "
        "CUPED metrics) from a JSON file ('-' for stdin) and print the full analysis as JSON. "
        "The format is documented in docs/experiments.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON summary, or - for standard input.")

    def handle(self, *args, **options):
        try:
            if options["file"] == "-":
                summary = json.load(sys.stdin)
            else:
                with open(options["file"], encoding="utf-8") as fh:
                    summary = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}") from None
        try:
            result = stats.summary_analyze(summary)
        except stats.StatsError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(result, indent=2))
