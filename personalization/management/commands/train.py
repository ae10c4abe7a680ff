import time

from django.core.management.base import BaseCommand, CommandError

from personalization import services
from personalization.models import Recommender, TrainingRun


class Command(BaseCommand):
    help = (
        "Queue a training run for a recommender (or all of them); --wait follows it and prints its metrics."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", help="Recommender names.")
        parser.add_argument("--all", action="store_true", help="Every recommender.")
        parser.add_argument("--untrained", action="store_true", help="Only those without an active model.")
        parser.add_argument("--wait", action="store_true", help="Wait for a worker to finish each run.")
        parser.add_argument("--inline", action="store_true", help="Train in this process (no worker needed).")
        parser.add_argument("--timeout", type=float, default=1800, help="Seconds to wait with --wait.")

    def handle(self, *args, names, all, untrained, wait, inline, timeout, **options):
        recommenders = Recommender.objects.all() if all else Recommender.objects.filter(name__in=names)
        if untrained:
            recommenders = recommenders.filter(active_run__isnull=True)
        missing = sorted(set(names) - set(recommenders.values_list("name", flat=True)))
        if not all and not untrained and missing:
            raise CommandError(f"No recommender named {', '.join(missing)}.")
        if not all and not names:
            raise CommandError("Name at least one recommender, or use --all.")
        failed = False
        for recommender in recommenders.order_by("name"):
            try:
                run = services.training_run_request(recommender=recommender)
            except services.TrainingError as exc:
                self.stderr.write(str(exc))
                continue
            self.stdout.write(f"{recommender.name}: queued v{run.version} (run {run.pk})")
            if inline:
                run = services.training_run_execute(run_id=run.pk)
            elif wait:
                run = self._wait(run, timeout)
            else:
                continue
            failed |= not self._report(run)
        if failed:
            raise CommandError("At least one training run failed.")

    def _wait(self, run: TrainingRun, timeout: float) -> TrainingRun:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if (run.status, run.progress) != last:
                last = (run.status, run.progress)
                self.stdout.write(f"  {run.status} {run.progress}% {run.message}")
            if run.is_finished:
                return run
            time.sleep(1)
        raise CommandError(f"Run {run.pk} did not finish within {timeout:g} s (is a worker running?).")

    def _report(self, run: TrainingRun) -> bool:
        if run.status != TrainingRun.Status.SUCCEEDED:
            self.stderr.write(f"  failed: {run.error.splitlines()[0] if run.error else run.message}")
            return False
        for name, value in run.metrics.items():
            self.stdout.write(
                f"  {name:>16} {value:.4f}" if isinstance(value, float) else f"  {name:>16} {value}"
            )
        if run.activation_note:
            self.stdout.write(f"  {run.activation_note}")
        return True
