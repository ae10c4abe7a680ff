"""Settings read from the environment reach the components that use them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _celery_conf(name: str, **env) -> str:
    code = f"import django; django.setup(); from recsite.celery import app; print(app.conf.{name})"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "recsite.settings", **env}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(("value", "expected"), [("", "2097152"), ("512", "524288"), ("0", "None")])
def test_worker_memory_per_child_comes_from_the_environment_in_kib(value, expected):
    assert _celery_conf("worker_max_memory_per_child", WORKER_MAX_MEMORY_MB=value) == expected


def _setting(name: str, **env) -> subprocess.CompletedProcess:
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "recsite.settings", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("value", "expected"), [("", "2"), ("3", "3")])
def test_import_writers_come_from_the_environment(value, expected):
    done = _setting("IMPORT_WRITERS", IMPORT_WRITERS=value)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == expected


def test_import_writers_below_one_are_refused_at_start_up():
    done = _setting("IMPORT_WRITERS", IMPORT_WRITERS="0")
    assert done.returncode != 0
    assert "IMPORT_WRITERS must be at least 1" in done.stderr
