"""Fault injection: real worker, web and broker processes that the tests kill, stop and restart.

Each helper skips with a clear message when what it needs is missing (PostgreSQL for the
database tests, ``redis-server`` for the broker outage) and fails instead under ``CI=true``,
where .ci/run provides them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from kombu import pools as kombu_pools

from recsite.celery import app as celery_app
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = Path(settings.VAR_DIR) / "faults"


def wait_for(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.25):
    """Poll until ``predicate()`` is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database as a URL for child processes."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def broker_use(url: str) -> None:
    """Point this (test) process's Celery app at another broker, dropping pooled connections."""
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    os.environ["CELERY_BROKER_URL"] = url
    celery_app.conf.broker_url = url
    kombu_pools.reset()  # closes and forgets every pooled connection (a closed pool stays registered)
    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


class Proc:
    """A child process in its own session (so a kill reaches its children too), logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}.log"
        self.log = open(self.log_path, "w+")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, tail: int | None = 6000) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (the Celery main process and its pool)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        self.log.close()


@pytest.fixture
def processes():
    """Start child processes; all are stopped at the end of the test, even on failure."""
    started: list[Proc] = []

    def start(name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, cmd, {**os.environ, "DATABASE_URL": database_url(), **(env or {})})
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def real_worker(processes):
    """``real_worker(broker_url=..., env={...})`` starts a Celery worker (both queues, one
    process) on the test database. ``slow_fit_seconds`` makes each trending fit sleep first,
    so a test can kill the worker in the middle of a training run (tests/faults/worker_main.py).
    From the first start on, this process sends tasks to the broker instead of running them."""

    def start(
        *, broker_url: str | None = None, env: dict | None = None, slow_fit_seconds: float = 0, name="worker"
    ):
        cmd = [
            sys.executable, str(Path(__file__).with_name("worker_main.py")), "-A", "recsite", "worker",
            "--loglevel", "INFO", "--queues", "default,heavy", "--concurrency", "1",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        celery_app.conf.task_always_eager = False
        child_env = {
            "CELERY_BROKER_URL": broker_url or celery_app.conf.broker_url,
            "FAULTS_SLOW_FIT_SECONDS": str(slow_fit_seconds),
            **(env or {}),
        }
        return processes(name, cmd, child_env)

    yield start
    celery_app.conf.task_always_eager = True


@pytest.fixture
def private_redis():
    """A redis-server of our own on a free port with an append-only file, so the test can stop
    and restart the broker without touching the shared one (queued messages survive)."""
    binary = shutil.which("redis-server")
    need(binary is not None, "redis-server is not installed: the broker outage test needs its own Redis")
    tmp = tempfile.mkdtemp(prefix="recsite-faults-redis-")
    port = free_port()

    class Redis:
        url = f"redis://127.0.0.1:{port}/0"
        proc: subprocess.Popen | None = None

        def start(self):
            cmd = [
                binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "",
                "--appendonly", "yes", "--appendfsync", "always",
            ]  # fmt: skip
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(self.answers, timeout=20, what=f"redis-server on port {port}")

        def answers(self) -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        def stop(self):
            """SIGTERM: Redis flushes the append-only file and exits, as a restart would."""
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
                self.proc.wait(timeout=20)

    redis = Redis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def restore_broker():
    """Give the test process its configured broker back afterwards."""
    original, env = celery_app.conf.broker_url, os.environ.get("CELERY_BROKER_URL")
    yield
    broker_use(original)
    if env is None:
        os.environ.pop("CELERY_BROKER_URL", None)
    else:
        os.environ["CELERY_BROKER_URL"] = env
