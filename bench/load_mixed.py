"""Mixed production-like load: tracking batches, recommendations and dashboard pages at once,
against gunicorn (2 workers), one Celery worker and beat on PostgreSQL + Redis.

Prepares the database if it is empty (migrate, a small seed_demo, trending and popularity
trained inline), starts gunicorn, the worker and beat (which flushes the buffered
recommendation impressions and resends the outbox) with the current environment, then runs N
client threads for ``--seconds`` (default 600). Each client picks an endpoint by weight:

- ``batch``: POST /api/v1/batch with 20 track events (write key, new message ids each time);
- ``recommendations``: GET /api/v1/recommendations for a random known profile (API token);
- ``dashboard``: GET / (the dashboard, 30 days of event counts) as a signed-in admin;
- ``jobs``: GET /jobs/ as a signed-in admin.

A training run is requested every ``--train-every`` seconds so the worker works too. Reports
requests/s, p50/p99 latency and errors per endpoint, and the resident memory (RSS) of the web
processes (gunicorn master + workers) and of the worker (main + pool) sampled over time, with
the load average, and the command to reproduce.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/recsite_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/10 REDIS_URL=redis://127.0.0.1:6379/11 \\
      python bench/load_mixed.py [--seconds 600] [--clients 6] [--sample-every 10]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
WEIGHTS = {"batch": 3, "recommendations": 6, "dashboard": 1, "jobs": 1}
# Load the URL configuration (and with it scikit-learn, scipy, pandas) in gunicorn's master,
# before it forks: otherwise each worker imports them on its first request, which on a loaded
# machine outlasts gunicorn's worker timeout.
GUNICORN_CONF = """
def on_starting(server):
    import django

    django.setup()
    import recsite.urls  # noqa: F401
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in task.read_text().split())
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MB."""
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError):
            continue
    return total / 1e6


def database_create(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def prepare(args, env: dict) -> dict:
    """Create the database if missing, migrate and seed if empty; return the credentials and
    ids the clients use."""
    database_create(os.environ["DATABASE_URL"])
    manage("migrate", "--no-input", "-v0", env=env)
    manage("seed_demo", "--if-empty", "--profiles", str(args.profiles), "--events", str(args.events), env=env)
    manage("setup_accounts", env=env)
    manage("train", "--untrained", "--inline", "trending", "popularity", env=env)

    import django

    django.setup()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    from catalog.models import Item
    from personalization import tracking
    from personalization.models import Profile, Recommender
    from recsite.tokens import token_create

    user, _ = get_user_model().objects.get_or_create(username="bench-load")
    user.is_superuser = user.is_staff = True
    user.save()
    _, token = token_create(user=user, name="bench/load_mixed.py")
    _, write_key = tracking.write_key_create(source_name="bench-load")
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    recommender = Recommender.objects.filter(active_run__isnull=False).order_by("name").first()
    if recommender is None:
        raise SystemExit("no trained recommender; training failed")
    return {
        "token": token,
        "basic": base64.b64encode(f"{write_key}:".encode()).decode(),
        "session": session.session_key,
        "users": list(Profile.objects.exclude(external_id="").values_list("external_id", flat=True)[:2000]),
        "items": list(Item.objects.values_list("external_id", flat=True)[:2000]),
        "recommender": recommender.pk,
    }


class Client(threading.Thread):
    def __init__(self, port: int, ctx: dict, stop_at: float, results: dict, lock: threading.Lock, seed: int):
        super().__init__(daemon=True)
        self.port, self.ctx, self.stop_at, self.results, self.lock = port, ctx, stop_at, results, lock
        self.rng = random.Random(seed)
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, headers: dict, body: bytes | None = None) -> int:
        for attempt in (1, 2):  # one reconnect if the server closed a kept-alive connection
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        return 0

    def one(self, kind: str) -> int:
        ctx, rng = self.ctx, self.rng
        if kind == "batch":
            events = [
                {
                    "type": "track", "event": "Video Playback Started", "userId": rng.choice(ctx["users"]),
                    "messageId": uuid.uuid4().hex,
                    "properties": {"content_asset_id": rng.choice(ctx["items"])},
                }
                for _ in range(20)
            ]  # fmt: skip
            body = json.dumps({"batch": events}).encode()
            headers = {"Authorization": f"Basic {ctx['basic']}", "Content-Type": "application/json"}
            return self.request("POST", "/api/v1/batch", headers, body)
        if kind == "recommendations":
            path = f"/api/v1/recommendations?user_id={rng.choice(ctx['users'])}&k=10"
            return self.request("GET", path, {"Authorization": f"Token {ctx['token']}"})
        cookie = {"Cookie": f"sessionid={ctx['session']}"}
        return self.request("GET", "/" if kind == "dashboard" else "/jobs/", cookie)

    def run(self):
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        while time.monotonic() < self.stop_at:
            kind = self.rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                status = self.one(kind)
            except Exception as exc:  # counted as an error, shown in the report
                status = f"{type(exc).__name__}"
            elapsed = time.perf_counter() - started
            with self.lock:
                self.results[kind].append((elapsed, status))


def trainer(port: int, ctx: dict, stop_at: float, every: float, outcomes: list) -> None:
    while time.monotonic() + every < stop_at:
        time.sleep(every)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", f"/api/v1/recommenders/{ctx['recommender']}/train", headers={
            "Authorization": f"Token {ctx['token']}"})  # fmt: skip
        response = conn.getresponse()
        response.read()
        outcomes.append(response.status)
        conn.close()


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--sample-every", type=float, default=10, help="Seconds between RSS samples.")
    parser.add_argument("--train-every", type=float, default=60, help="Seconds between training requests.")
    parser.add_argument(
        "--profiles", type=int, default=1000, help="seed_demo size when the database is empty."
    )
    parser.add_argument("--events", type=int, default=60_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL=postgres://... (and CELERY_BROKER_URL, REDIS_URL to Redis)")
    env = {**os.environ, "API_THROTTLE_USER": "", "API_THROTTLE_ANON": ""}
    os.environ.update(env)
    ctx = prepare(args, env)

    port = free_port()
    conf = Path(tempfile.mkdtemp(prefix="load-mixed-")) / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF)
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "recsite.wsgi", "--bind", f"127.0.0.1:{port}",
         "--config", str(conf), "--workers", str(args.web_workers), "--preload", "--timeout", "120",
         "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "recsite", "worker", "--concurrency", "1",
         "--queues", "default,heavy", "--loglevel", "WARNING", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "recsite", "beat", "--loglevel", "WARNING"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # the master imports the whole app first (--preload)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.3)
        warm = Client(port, ctx, 0, defaultdict(list), threading.Lock(), seed=-1)
        for kind in [*WEIGHTS] * 4:  # untimed: first model loads and template compiles
            warm.one(kind)
        load_before = load_average()
        results: dict[str, list] = defaultdict(list)
        lock = threading.Lock()
        start = time.monotonic()
        stop_at = start + args.seconds
        clients = [Client(port, ctx, stop_at, results, lock, seed=n) for n in range(args.clients)]
        trains: list[int] = []
        threads = [
            *clients,
            threading.Thread(target=trainer, args=(port, ctx, stop_at, args.train_every, trains)),
        ]
        for t in threads:
            t.start()
        samples = []
        while time.monotonic() < stop_at:
            samples.append((time.monotonic() - start, rss_mb(web.pid), rss_mb(worker.pid), load_average()))
            time.sleep(min(args.sample_every, max(0.0, stop_at - time.monotonic())))
        for t in threads:
            t.join(timeout=120)
        samples.append((time.monotonic() - start, rss_mb(web.pid), rss_mb(worker.pid), load_average()))
        wall = time.monotonic() - start
        time.sleep(15)  # let beat's next flush take the last impressions
        from recsite import impact
        from recsite.models import RecommendationImpression

        pending = impact.impressions_pending()
        stored = RecommendationImpression.objects.count()
    finally:
        for proc in (web, worker, beat):
            proc.terminate()
        for proc in (web, worker, beat):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(
        f"\nMixed load: {args.clients} clients, {wall:.0f} s, "
        f"gunicorn {args.web_workers} workers + 1 Celery worker"
    )
    print(f"load average before: {load_before}; after: {load_average()}; cores: {os.cpu_count()}")
    print(f"\n{'endpoint':<16}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}  statuses")
    total = errors = 0
    for kind in WEIGHTS:
        rows = results.get(kind, [])
        if not rows:
            continue
        times = sorted(r[0] * 1000 for r in rows)
        bad = [r[1] for r in rows if not isinstance(r[1], int) or r[1] >= 400]
        statuses = defaultdict(int)
        for r in rows:
            statuses[r[1]] += 1
        total += len(rows)
        errors += len(bad)
        print(
            f"{kind:<16}{len(rows):>9}{len(rows) / wall:>8.1f}{percentile(times, 0.5):>9.1f}"
            f"{percentile(times, 0.99):>9.1f}{len(bad):>8}  {dict(statuses)}"
        )
    print(
        f"{'all':<16}{total:>9}{total / wall:>8.1f}{'':>18}{errors:>8}"
        f"  error rate {errors / max(total, 1):.4%}"
    )
    print(f"training requests: {len(trains)} (statuses {sorted(set(trains))})")
    print(f"impressions: {stored:,} rows stored; {pending:,} requests' worth still buffered 15 s after")
    print(f"\n{'t (s)':>7}{'web RSS MB':>12}{'worker RSS MB':>15}  load average")
    for t, w, c, la in samples:
        print(f"{t:>7.0f}{w:>12.1f}{c:>15.1f}  {la}")
    if len(samples) > 2:
        first, last = samples[1], samples[-1]  # the first sample is before the warm-up
        print(
            f"RSS change after warm-up: web {last[1] - first[1]:+.1f} MB, worker {last[2] - first[2]:+.1f} MB"
        )
    shown = [  # passwords masked
        f"{k}={re.sub(r':[^:@/]+@', ':***@', os.environ[k])}"
        for k in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")
        if k in os.environ
    ]
    print(
        "\nreproduce: " + " ".join([*shown, "python", "bench/load_mixed.py", *map(shlex.quote, sys.argv[1:])])
    )


if __name__ == "__main__":
    main()
