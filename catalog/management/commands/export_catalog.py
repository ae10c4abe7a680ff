"""``manage.py export_catalog FILE [--taxonomy]``: the import format, CSV or JSON by extension."""

from pathlib import Path

from django.core.management.base import BaseCommand

from catalog import imports


class Command(BaseCommand):
    help = "Export items (or, with --taxonomy, the tag paths) as CSV or JSON (by the file's extension)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--taxonomy", action="store_true")

    def handle(self, *args, file: Path, taxonomy: bool, **options):
        fmt = "json" if file.suffix.lower() == ".json" else "csv"
        with file.open("w", encoding="utf-8", newline="") as out:
            count = imports.catalog_export(out=out, fmt=fmt, kind="taxonomy" if taxonomy else "items")
        self.stdout.write(self.style.SUCCESS(f"{count:,} rows written to {file}"))
