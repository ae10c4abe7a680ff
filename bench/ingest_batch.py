"""Sustained ingestion through POST /api/v1/batch, against gunicorn on 127.0.0.1.

Creates a fresh database (PostgreSQL when DATABASE_URL is set, else SQLite in a temporary
var dir), migrates it, loads a catalog, starts gunicorn, and sends pre-serialised batches
from several client threads over keep-alive connections. Prints events/s and request
latency percentiles; the CPU time of the gunicorn workers, of the PostgreSQL backends that
served the run (sampled from /proc: Linux only) and of the client, and the server's CPU per
event (the machine is shared, so this is the figure that moves least with the load); on
PostgreSQL also the speed of a raw COPY of the same rows, and the ratio.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rs_bench_ingest \\
        .venv/bin/python bench/ingest_batch.py --events 200000
    .venv/bin/python bench/ingest_batch.py --events 50000          # SQLite
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
NAMES = [
    ("Video Playback Started", 30), ("Video Playback Paused", 10), ("Video Playback Completed", 15),
    ("Product Viewed", 30), ("Product Added", 5), ("Order Completed", 2), ("Trailer Shared", 3),
]  # fmt: skip


def load_average() -> str:
    """The 1-minute load average: the machine is shared, so every figure is reported with it."""
    return f"{os.getloadavg()[0]:.1f}"


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


class BackendCpu:
    """CPU used by the PostgreSQL backends serving one database, sampled in a thread (a
    backend's counters vanish with it, so the last reading of each is kept). The machine's
    other databases are not counted."""

    def __init__(self, url: str):
        self.url, self.name = url, url.rsplit("/", 1)[1].split("?")[0]
        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, conn) -> dict[int, float]:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.name]
        ).fetchall()
        return {pid: process_cpu(pid) for (pid,) in rows}

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            self.start = self._sample(conn)
            self.last = dict(self.start)
            while not self.stop.wait(0.2):
                for pid, cpu in self._sample(conn).items():
                    if cpu:
                        self.last[pid] = cpu
            self.last.update({p: c for p, c in self._sample(conn).items() if c})

    def __enter__(self) -> BackendCpu:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in self.last.items())


def manage(env: dict, *args: str) -> str:
    out = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


def database_reset(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def catalog_load(env: dict, items: int) -> None:
    code = (
        "from catalog.models import Item;"
        f"Item.objects.bulk_create([Item(external_id=f'm{{i}}', title=f'T{{i}}') for i in range({items})])"
    )
    subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True)


def bodies_make(*, events: int, batch: int, users: int, items: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    names, weights = zip(*NAMES, strict=True)
    start = datetime.now(UTC) - timedelta(days=1)
    out = []
    for b in range(0, events, batch):
        messages = []
        for n in range(b, min(b + batch, events)):
            user = rng.randrange(users)
            message = {
                "type": "track",
                "event": rng.choices(names, weights)[0],
                "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                "properties": {
                    "content_asset_id": f"m{rng.randrange(items)}",
                    "position": rng.randrange(5400),
                },
                "context": {"library": {"name": "analytics-python", "version": "2.3.0"}},
                "timestamp": (start + timedelta(seconds=n)).isoformat(),
            }
            if user % 5 == 0:
                message["anonymousId"] = f"anon-{user}"
            else:
                message["userId"] = f"user-{user}"
            messages.append(message)
        out.append(json.dumps({"batch": messages, "sentAt": datetime.now(UTC).isoformat()}).encode())
    return out


def server_start(env: dict, port: int, workers: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(Path(PYTHON).parent / "gunicorn"), "recsite.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "--timeout", "120", "--preload"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status < 500:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def send_all(bodies: list[bytes], *, port: int, key: str, threads: int) -> tuple[float, list[float], int]:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    latencies: list[float] = []
    stored = [0]
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/batch", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - t0
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {payload[:300]!r}")
            with lock:
                latencies.append(elapsed)
                stored[0] += json.loads(payload)["stored"]

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started, latencies, stored[0]


def copy_speed(url: str) -> tuple[int, float]:
    """COPY the stored event rows into an identical empty table (same indexes)."""
    import psycopg

    with psycopg.connect(url) as conn:
        buffer = io.BytesIO()
        with conn.cursor().copy(
            "COPY (SELECT source_id, message_id, name, type, profile_id, item_id, value, properties, "
            "timestamp, received_at FROM personalization_event) TO STDOUT"
        ) as copy:
            for chunk in copy:
                buffer.write(chunk)
        rows = conn.execute("SELECT count(*) FROM personalization_event").fetchone()[0]
        conn.execute("CREATE TABLE bench_event_copy (LIKE personalization_event INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY bench_event_copy (source_id, message_id, name, type, profile_id, item_id, value, "
            "properties, timestamp, received_at) FROM STDIN"
        ) as copy:
            copy.write(buffer.getvalue())
        conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_event_copy")
        conn.commit()
    return rows, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    var = tempfile.mkdtemp(prefix="rs-bench-")
    env = {**os.environ, "RECSITE_VAR_DIR": var, "DEBUG": "0", "LOG_LEVEL": "WARNING"}
    if url:
        database_reset(url)
    manage(env, "migrate", "-v0")
    catalog_load(env, args.items)
    key = manage(env, "create_write_key", "bench").strip()
    bodies = bodies_make(events=args.events, batch=args.batch, users=args.users, items=args.items)
    server = server_start(env, args.port, args.workers)
    load_before = load_average()
    # Forked after --preload, a worker starts at zero: only the run is counted.
    server_cpu = -sum(process_cpu(pid) for pid in child_pids(server.pid))
    client_cpu = -time.process_time()
    backend = BackendCpu(url) if url else contextlib.nullcontext()
    try:
        with backend:
            elapsed, latencies, stored = send_all(bodies, port=args.port, key=key, threads=args.threads)
        client_cpu += time.process_time()
        server_cpu += sum(process_cpu(pid) for pid in child_pids(server.pid))
    finally:
        server.terminate()
        server.wait()
    latencies.sort()
    rate = stored / elapsed
    backend_name = "PostgreSQL" if url else "SQLite"
    print(f"backend: {backend_name}; {stored:,} events in {len(bodies)} batches of {args.batch}; "
          f"gunicorn -w {args.workers}, {args.threads} client threads")  # fmt: skip
    print(f"API: {rate:,.0f} events/s; request latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms")  # fmt: skip
    cpu = f"CPU: gunicorn workers {server_cpu:.1f} s"
    if url:
        cpu += f", PostgreSQL backends {backend.seconds:.1f} s"
        server_cpu += backend.seconds
    print(f"{cpu}, client {client_cpu:.1f} s; server {server_cpu / stored * 1e6:.0f} us of CPU per event "
          f"(wall {elapsed:.1f} s)")  # fmt: skip
    if url:
        rows, copy_elapsed = copy_speed(url)
        copy_rate = rows / copy_elapsed
        print(
            f"raw COPY of the same {rows:,} rows: {copy_rate:,.0f} rows/s; "
            f"API / COPY = {rate / copy_rate:.2f}"
        )
    print(f"load average (1 min) before / after the run: {load_before} / {load_average()}")
    print("reproduce: " + ("DATABASE_URL=... " if url else "") + "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
