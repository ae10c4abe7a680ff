from django.core.management.base import BaseCommand

from personalization import interactions


class Command(BaseCommand):
    help = "Recompute the interaction-strength table from raw events (backfills, weight changes)."

    def handle(self, *args, **options):
        written = interactions.interactions_rebuild()
        self.stdout.write(f"{written} profile-item interactions written.")
