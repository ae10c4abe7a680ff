"""Run the whole product in the foreground: gunicorn, a Celery worker and Celery beat.

Ctrl-C (SIGINT) or SIGTERM stops all three cleanly; if one of them dies, the others are
stopped too, so a broken stack never looks half alive.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

GRACE_SECONDS = 20


class Command(BaseCommand):
    help = "Run the web server (gunicorn), a Celery worker and Celery beat together."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
        parser.add_argument(
            "--worker-concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2"))
        )

    def commands(self, options) -> dict[str, list[str]]:
        bin_dir = os.path.dirname(sys.executable)
        celery = os.path.join(bin_dir, "celery")
        worker_flags = []
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            # The filesystem broker has no broadcast channel for worker-to-worker chatter.
            worker_flags = ["--without-mingle", "--without-gossip"]
        return {
            "web": [
                os.path.join(bin_dir, "gunicorn"), "recsite.wsgi",
                "--bind", f"{options['host']}:{options['port']}",
                "--workers", str(options["web_workers"]),
                "--access-logfile", "-", "--graceful-timeout", "10", "--preload",
            ],
            "worker": [
                celery, "-A", "recsite", "worker", "--loglevel", "INFO",
                "--queues", "default,heavy", "--concurrency", str(options["worker_concurrency"]),
                *worker_flags,
            ],
            "beat": [celery, "-A", "recsite", "beat", "--loglevel", "INFO"],
        }  # fmt: skip

    def handle(self, *args, **options):
        procs: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_args):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name, cmd in self.commands(options).items():
            # Own process group: the terminal's Ctrl-C reaches us, and we stop children in order.
            procs[name] = subprocess.Popen(cmd, start_new_session=True)
            self.stdout.write(f"started {name} (pid {procs[name].pid})")
        self.stdout.write(
            self.style.SUCCESS(
                f"recsite is running at http://{options['host']}:{options['port']}/ (Ctrl-C stops it)"
            )
        )
        exit_code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping the others")
                    exit_code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.5)
        self.stdout.write("stopping...")
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in {GRACE_SECONDS} s; killing it")
                proc.kill()
                proc.wait()
        self.stdout.write("stopped")
        sys.exit(exit_code)
