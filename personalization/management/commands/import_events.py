import time

from django.core.management.base import BaseCommand, CommandError

from personalization import tracking


class Command(BaseCommand):
    # No system checks: they load the URL configuration and with it every API module
    # (scikit-learn, SciPy, pandas), 3 s of CPU before the first row; `check` and the
    # server run them.
    requires_system_checks: list = []
    help = (
        "Import events from CSV (user_id,item_id,event,value,timestamp[,anonymous_id,properties]) or "
        "NDJSON (Segment messages). Chunked and resumable: a rerun continues after the last committed line."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--source", default="import", help="Source name (message ids are unique per source)."
        )
        parser.add_argument("--format", choices=["csv", "ndjson"], help="Default: from the file extension.")
        parser.add_argument("--strict", action="store_true", help="Stop at the first bad row.")
        parser.add_argument(
            "--restart", action="store_true", help="Ignore the checkpoint and start at line 1."
        )
        parser.add_argument("--chunk-size", type=int, default=20_000)
        parser.add_argument(
            "--writers",
            type=int,
            help="Parallel connections for CSV on PostgreSQL (default: IMPORT_WRITERS).",
        )

    def handle(self, *args, file, source, format, strict, restart, chunk_size, writers, **options):
        if writers is not None and writers < 1:
            raise CommandError("--writers must be at least 1.")
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        started = time.perf_counter()
        shown = 0

        def progress(report: tracking.ImportReport) -> None:
            nonlocal shown
            elapsed = time.perf_counter() - started
            self.stdout.write(
                f"line {report.lines:,}: {report.stored:,} stored, {report.duplicates:,} duplicates, "
                f"{report.rejected:,} rejected ({report.stored / elapsed:,.0f} events/s)"
            )
            for line, error in report.errors[shown:]:
                self.stderr.write(f"line {line}: {error}")
            shown = len(report.errors)

        try:
            report = tracking.events_import(
                path=file, source_name=source, fmt=format, strict=strict, restart=restart,
                chunk_size=chunk_size, progress=progress, writers=writers,
            )  # fmt: skip
        except FileNotFoundError:
            raise CommandError(f"No such file: {file}") from None
        except tracking.ImportFailed as exc:
            raise CommandError(f"{exc} (earlier chunks are committed; fix the row and rerun)") from None
        if report.resumed_from:
            self.stdout.write(
                f"Resumed after line {report.resumed_from:,} ({report.skipped:,} lines skipped)."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {report.stored:,} stored, {report.duplicates:,} duplicates, "
                f"{report.rejected:,} rejected in {time.perf_counter() - started:.1f} s."
            )
        )
        if report.chunks_set_based < report.chunks and report.chunks and format != "ndjson":
            self.stdout.write(
                f"{report.chunks - report.chunks_set_based:,} of {report.chunks:,} chunks went row by row "
                '(a row that is not plain: see docs/tracking.md, "Bulk import").'
            )
