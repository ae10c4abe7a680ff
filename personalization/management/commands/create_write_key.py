from django.core.management.base import BaseCommand, CommandError

from personalization import tracking


class Command(BaseCommand):
    help = "Create a write key for a source (created if missing) and print it once."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Source name, e.g. 'web' or 'ios-app'.")

    def handle(self, *args, name: str, **options):
        try:
            write_key, key = tracking.write_key_create(source_name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"Write key for source {write_key.source.name!r} (shown once, store it now):")
        self.stdout.write(key)
