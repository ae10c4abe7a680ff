"""``manage.py import_catalog FILE [--strict] [--dry-run]``: items or a taxonomy, CSV or JSON."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalog import imports
from catalog.services import CatalogError


class Command(BaseCommand):
    help = (
        "Import items (CSV columns external_id,title,description,kind,tags[,release_date,image_url,active], "
        "or JSON) or a taxonomy (CSV column path, or a JSON list of paths). All or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--strict", action="store_true", help="Report unknown tag paths instead of creating them."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check the file and print the plan; write nothing."
        )
        parser.add_argument(
            "--kind", choices=["items", "taxonomy"], help="Default: detected from the columns."
        )

    def handle(self, *args, file: Path, strict: bool, dry_run: bool, kind: str | None, **options):
        if not file.exists():
            raise CommandError(f"{file} does not exist.")
        try:
            plan = imports.import_plan(data=file.read_bytes(), filename=file.name, strict=strict, kind=kind)
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{plan.kind}: {len(plan.rows):,} rows, {plan.to_create:,} to create, "
            f"{plan.to_update:,} to update, "
            f"{len(plan.new_tags):,} new tags ({plan.encoding})"
        )
        if plan.errors:
            for error in plan.errors[: imports.MAX_ERRORS]:
                self.stderr.write(str(error))
            raise CommandError(f"{len(plan.errors)} error(s); nothing was imported.")
        if dry_run:
            self.stdout.write("Dry run: nothing was written.")
            return
        counts = imports.import_apply(plan=plan, progress=lambda p, m: self.stdout.write(f"{p:3d}% {m}"))
        self.stdout.write(self.style.SUCCESS(imports.counts_message(counts)))
