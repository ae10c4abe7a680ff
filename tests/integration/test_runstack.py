"""`manage.py runstack` (what `make run` starts) serves pages with a worker and beat beside
it, and Ctrl-C stops all three. Runs on the embedded default in a scratch folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_runstack_serves_the_login_page_and_stops_everything_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    env["RECSITE_VAR_DIR"] = str(tmp_path)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    port = free_port()
    log = open(tmp_path / "runstack.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*manage, "runstack", "--port", str(port), "--web-workers", "1", "--worker-concurrency", "1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as response:
                    body = response.read().decode()
                    break
            except OSError:
                time.sleep(0.3)
        assert "Log in" in body, log.seek(0) or log.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=40) == 0
        log.seek(0)
        output = log.read()
        assert "stopped" in output
        # Nothing left listening on the port.
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
