"""``manage.py import_movielens DIR``: the CSV layout shared by ml-latest-small and ml-25m."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalog import imports
from catalog.services import CatalogError


class Command(BaseCommand):
    help = (
        "Import MovieLens: movies.csv -> items, genres -> Genre facet, tags.csv -> Theme facet, "
        "ratings.csv -> rate events. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument(
            "--min-tag-movies", type=int, default=3, help="Keep themes used on this many movies."
        )
        parser.add_argument("--no-ratings", action="store_true", help="Skip ratings.csv.")

    def handle(self, *args, directory: Path, min_tag_movies: int, no_ratings: bool, **options):
        try:
            counts = imports.movielens_import(
                directory=directory,
                min_tag_movies=min_tag_movies,
                ratings=not no_ratings,
                say=self.stdout.write,
            )
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(imports.counts_message(counts)))
