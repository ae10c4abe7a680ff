from django.core.management.base import BaseCommand

from recsite import impact


class Command(BaseCommand):
    help = (
        "Add demo recommendation clicks and impressions before recent engagement events, so the "
        "Business impact page has a history to show (run after seed_demo). Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args, days, seed, **options):
        result = impact.impact_demo_seed(days=days, seed=seed)
        self.stdout.write(
            f"{result['clicks']} clicks and {result['impressions']} impressions; "
            f"{result['rows']} daily figures."
        )
