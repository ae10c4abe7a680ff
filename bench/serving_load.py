"""Load test of GET /api/v1/recommendations for warm profiles, against gunicorn.

Starts gunicorn (recsite.wsgi) on a free local port with the current environment
(DATABASE_URL, REDIS_URL...), sends requests from N client threads for a fixed time, and
reports requests/s and latency percentiles. Then does the same against a bare WSGI app
that returns the same JSON body, to show the framework's share, and prints the ratio.

Needs a database with trained recommenders (e.g. after `make run`, or
`python manage.py seed_demo && python manage.py train --all --inline`).

    python bench/serving_load.py [--seconds 20] [--clients 8] [--workers 2] [--recommender hybrid]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")

BARE_APP = """
import json
BODY = open({path!r}, "rb").read()
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not start")


def load(port: int, paths: list[str], headers: dict, seconds: float, clients: int) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, bad, n = [], 0, offset
        while time.monotonic() < stop_at:
            path = paths[n % len(paths)]
            n += clients
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 100 else [latencies[-1]] * 99
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recommender", default="hybrid")
    parser.add_argument("--profiles", type=int, default=500)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from personalization.models import PrecomputedList, Recommender

    recommender = Recommender.objects.filter(name=args.recommender, active_run__isnull=False).first()
    if recommender is None:
        raise SystemExit(f"no trained recommender named {args.recommender!r}; train it first")
    warm = list(
        PrecomputedList.objects.filter(run_id=recommender.active_run_id).values_list(
            "profile__external_id", flat=True
        )[: args.profiles]
    )
    warm = [w for w in warm if w]
    if not warm:
        raise SystemExit("no precomputed (warm) profiles for that recommender")
    user, _ = get_user_model().objects.get_or_create(username="bench-serving")
    user.is_superuser = True
    user.save()
    token, _ = Token.objects.get_or_create(user=user)
    headers = {"Authorization": f"Token {token.key}", "Connection": "keep-alive"}
    paths = [f"/api/v1/recommendations?user_id={w}&recommender={args.recommender}&k=10" for w in warm]

    # One token drives all the load: the per-user API rate (docs/security.md) would cap it.
    env = {**os.environ, "DEBUG": "0", "API_THROTTLE_USER": os.environ.get("API_THROTTLE_USER", "")}
    port = free_port()

    def gunicorn(app: str, port: int) -> list[str]:
        bind = f"127.0.0.1:{port}"
        return [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind", bind,
                "--log-level", "warning", app]  # fmt: skip

    server = subprocess.Popen(gunicorn("recsite.wsgi", port), cwd=ROOT, env=env)
    try:
        wait_up(port)
        load(port, paths, headers, 3, args.clients)  # warm-up: every worker loads the model
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", paths[0], headers=headers)
        body = conn.getresponse().read()
        django_figures = load(port, paths, headers, args.seconds, args.clients)
    finally:
        server.terminate()
        server.wait()

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "body.json").write_bytes(body)
        Path(tmp, "bare_app.py").write_text(BARE_APP.format(path=str(Path(tmp, "body.json"))))
        port = free_port()
        bare = subprocess.Popen(gunicorn("bare_app:application", port), cwd=tmp, env=env)
        try:
            wait_up(port)
            load(port, paths, headers, 2, args.clients)
            bare_figures = load(port, paths, headers, args.seconds, args.clients)
        finally:
            bare.terminate()
            bare.wait()

    db = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    cache = "Redis" if os.environ.get("REDIS_URL") else "local memory"
    print(
        f"GET /api/v1/recommendations, {len(warm)} warm profiles, recommender {args.recommender}, {db}, "
        f"cache {cache}, {args.workers} gunicorn workers, {args.clients} client threads, {args.seconds:g} s"
    )
    for name, figures in (("recsite", django_figures), ("bare WSGI, same JSON", bare_figures)):
        print(
            f"  {name:<22} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:6.1f} ms  "
            f"p99 {figures['p99_ms']:6.1f} ms  errors {figures['errors']}  ({figures['requests']} requests)"
        )
    print(f"  ratio recsite / bare: {django_figures['rps'] / bare_figures['rps']:.2f}")
    print(json.dumps({"recsite": django_figures, "bare": bare_figures}, indent=None))
    print("reproduce: python bench/serving_load.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
