"""Load test of GET /api/v1/recommendations for warm profiles, against gunicorn.

Starts gunicorn (recsite.wsgi) on a free local port with the current environment
(DATABASE_URL, REDIS_URL...), sends requests from N client threads over keep-alive
connections for a fixed time, and reports requests/s and latency percentiles. Then does the
same against a bare WSGI app that returns the same JSON body, to show the framework's share,
and prints the ratio.

The load generator shares the machine with the server, so the script also reports the CPU
each side used per request (from /proc): the gunicorn processes, this load generator, and
the PostgreSQL backends of the database. The client is a minimal HTTP/1.1 loop over raw
sockets (http.client's header parsing costs more than the bare app's whole request).

With REDIS_URL set the server only pushes impressions onto a Redis list; beat's flush task
inserts them (docs/impact.md). No worker runs here, so the script flushes what was buffered
before the run, then, after it, does the flush task's work once and reports its time and its
CPU (this process and PostgreSQL) per served request, warm-up included.

Needs a database with trained recommenders (e.g. after `make run`, or
`python manage.py seed_demo && python manage.py train --all --inline`).

    python bench/serving_load.py [--seconds 20] [--clients 8] [--workers 2] [--recommender hybrid]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (gunicorn's master and workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            todo.extend(int(child) for child in task.read_text().split())
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (0 for those gone or unreadable)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_response(sock: socket.socket, pending: bytes) -> tuple[int, bool, bytes, bytes]:
    """One HTTP/1.1 response: (status, server closes the connection, body, leftover bytes)."""
    data = pending
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the headers")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return status, close, body[:length], body[length:]


def load(port: int, paths: list[str], headers: dict, seconds: float, clients: int) -> dict:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    requests = [f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode() for path in paths]
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int) -> None:
        nonlocal errors
        sock, pending = None, b""
        mine, bad, n = [], 0, offset
        while time.monotonic() < stop_at:
            request = requests[n % len(requests)]
            n += clients
            started = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    pending = b""
                sock.sendall(request)
                status, close, _, pending = read_response(sock, pending)
                if status != 200:
                    bad += 1
                if close:
                    sock.close()
                    sock = None
            except (OSError, ValueError, IndexError):
                bad += 1
                if sock is not None:
                    sock.close()
                sock = None
            mine.append(time.perf_counter() - started)
        if sock is not None:
            sock.close()
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
        "max_ms": (latencies[-1] if latencies else 0) * 1000,
        "errors": errors,
    }


def warm_up(port: int, paths: list[str], headers: dict, args) -> dict:
    """Load until a round of two seconds has no error and no request over a second: a
    worker's first request imports the app and loads the model, which takes seconds (tens
    of seconds on a busy machine). Then ``--warmup`` more seconds fill the caches."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        figures = load(port, paths, headers, 2, args.clients)
        if figures["errors"] == 0 and figures["max_ms"] < 1000:
            break
    else:
        raise SystemExit("the server never settled: requests kept failing or taking over a second")
    return load(port, paths, headers, args.warmup, args.clients)


def measured(port: int, server_pid: int, db_pids, paths, headers, args) -> dict:
    """A load run plus the CPU each party spent on it, in milliseconds per request."""
    server, db = process_tree(server_pid), db_pids()
    before = (cpu_seconds(server), self_cpu(), cpu_seconds(db), time.perf_counter())
    figures = load(port, paths, headers, args.seconds, args.clients)
    after = (cpu_seconds(server), self_cpu(), cpu_seconds(db), time.perf_counter())
    n = max(figures["requests"], 1)
    figures["cpu_ms_per_request"] = {
        "server": (after[0] - before[0]) * 1000 / n,
        "load_generator": (after[1] - before[1]) * 1000 / n,
        "postgresql": (after[2] - before[2]) * 1000 / n,
    }
    figures["cpu_cores_busy"] = round(sum(after[i] - before[i] for i in range(3)) / (after[3] - before[3]), 2)
    figures["load_average"] = load_average()
    return figures


def flush_measured(impact, db_pids) -> dict | None:
    """With Redis the server only pushes impressions; the beat task inserts them. Do its work
    once here, so that its cost per served request is part of the figures."""
    pending = impact.impressions_pending()
    if not pending:  # no Redis, or IMPACT_RECORD_IMPRESSIONS=0
        return None
    db = db_pids()
    before = (self_cpu(), cpu_seconds(db), time.perf_counter())
    rows = impact.impressions_flush(max_seconds=600)
    after = (self_cpu(), cpu_seconds(db), time.perf_counter())
    n = pending  # every request served since the first flush, warm-up included
    return {
        "requests": pending,
        "rows": rows,
        "seconds": after[2] - before[2],
        "cpu_ms_per_request": {
            "flush": (after[0] - before[0]) * 1000 / n,
            "postgresql": (after[1] - before[1]) * 1000 / n,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--worker-class",
        default="gthread",
        choices=["sync", "gthread"],
        help="gthread (one thread per worker) keeps connections alive; sync closes each one.",
    )
    parser.add_argument("--recommender", default="hybrid")
    parser.add_argument("--placement", default="", help="Also pass ?placement=KEY.")
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="Seconds of load before measuring, after every worker answered (models, caches).",
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from personalization.models import PrecomputedList, Recommender
    from recsite.tokens import token_create

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
    _, key = token_create(user=user, name="bench/serving_load.py")
    headers = {"Authorization": f"Token {key}"}
    placement = f"&placement={args.placement}" if args.placement else ""
    paths = [
        f"/api/v1/recommendations?user_id={w}&recommender={args.recommender}&k=10{placement}" for w in warm
    ]

    postgres = connection.vendor == "postgresql"

    def db_pids() -> list[int]:
        """The PostgreSQL backends serving this database (the web workers' connections)."""
        if not postgres:
            return []
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            return [row[0] for row in cursor.fetchall()]

    def own_backend() -> list[int]:
        """This process's backend (where the flush below runs)."""
        if not postgres:
            return []
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return [cursor.fetchone()[0]]

    # One token drives all the load: the per-user API rate (docs/security.md) would cap it.
    env = {**os.environ, "DEBUG": "0", "API_THROTTLE_USER": os.environ.get("API_THROTTLE_USER", "")}
    port = free_port()

    def gunicorn(app: str, port: int) -> list[str]:
        bind = f"127.0.0.1:{port}"
        return [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind", bind,
                "--worker-class", args.worker_class, "--threads", "1", "--keep-alive", "30",
                "--log-level", "warning", app]  # fmt: skip

    from recsite import impact

    impact.impressions_flush()  # leftovers of an earlier run are not this run's work
    load_before = load_average()
    server = subprocess.Popen(gunicorn("recsite.wsgi", port), cwd=ROOT, env=env)
    try:
        wait_up(port)
        warmup = warm_up(port, paths, headers, args)
        with socket.create_connection(("127.0.0.1", port)) as probe:
            probe.sendall(
                f"GET {paths[0]} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {key}\r\n\r\n".encode()
            )
            status, _, body, _ = read_response(probe, b"")
        if status != 200:
            raise SystemExit(f"the first request answered {status}: {body[:300]!r}")
        django_figures = measured(port, server.pid, db_pids, paths, headers, args)
    finally:
        server.terminate()
        server.wait()
    flush = flush_measured(impact, lambda: db_pids() + own_backend())

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "body.json").write_bytes(body)
        Path(tmp, "bare_app.py").write_text(BARE_APP.format(path=str(Path(tmp, "body.json"))))
        port = free_port()
        bare = subprocess.Popen(gunicorn("bare_app:application", port), cwd=tmp, env=env)
        try:
            wait_up(port)
            load(port, paths, headers, 2, args.clients)
            bare_figures = measured(port, bare.pid, lambda: [], paths, headers, args)
        finally:
            bare.terminate()
            bare.wait()

    db = "PostgreSQL" if postgres else "SQLite"
    cache = "Redis" if os.environ.get("REDIS_URL") else "local memory"
    print(
        f"GET /api/v1/recommendations, {len(warm)} warm profiles, recommender {args.recommender}"
        f"{', placement ' + args.placement if args.placement else ''}, {db}, cache {cache}, "
        f"{args.workers} gunicorn {args.worker_class} workers, {args.clients} client threads, "
        f"{args.seconds:g} s after {warmup['requests']} warm-up requests, {os.cpu_count()} cores, "
        f"load average before {load_before}"
    )
    for name, figures in (("recsite", django_figures), ("bare WSGI, same JSON", bare_figures)):
        cpu = figures["cpu_ms_per_request"]
        print(
            f"  {name:<22} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:6.1f} ms  "
            f"p99 {figures['p99_ms']:6.1f} ms  errors {figures['errors']}  ({figures['requests']} requests)"
        )
        print(
            f"  {'':<22} CPU ms/request: server {cpu['server']:.2f}, load generator "
            f"{cpu['load_generator']:.2f}, PostgreSQL {cpu['postgresql']:.2f}; "
            f"{figures['cpu_cores_busy']} cores busy; load average after {figures['load_average']}"
        )
    print(f"  ratio recsite / bare: {django_figures['rps'] / bare_figures['rps']:.2f}")
    if flush is not None:
        print(
            f"  impressions flush (the beat task's work, after the run): {flush['rows']} rows of "
            f"{flush['requests']} requests in {flush['seconds']:.2f} s; CPU ms per served request: "
            f"flush {flush['cpu_ms_per_request']['flush']:.3f}, "
            f"PostgreSQL {flush['cpu_ms_per_request']['postgresql']:.3f}"
        )
    print(json.dumps({"recsite": django_figures, "bare": bare_figures, "flush": flush}, indent=None))
    print("reproduce: python bench/serving_load.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
