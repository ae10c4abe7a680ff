"""Bulk import speed: `manage.py import_events` on a generated CSV, fresh database. Prints
the wall time and the CPU time of the command and of its PostgreSQL backend.

DATABASE_URL=postgres://postgres@127.0.0.1:5432/rs_bench_import .venv/bin/python bench/ingest_import.py
.venv/bin/python bench/ingest_import.py --events 200000      # SQLite
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_batch import ROOT, BackendCpu, catalog_load, database_reset, load_average, manage

NAMES = ["play", "complete", "view", "Video Playback Started", "Product Viewed", "rate", "add_to_list"]


def csv_write(
    path: Path, *, events: int, users: int, items: int, seed: int = 3, iso: bool = False, bad_every: int = 0
) -> None:
    """Random events in time order; ``iso``: ISO 8601 timestamps instead of Unix seconds;
    ``bad_every``: every so many rows one with a value that is not a number."""
    rng = random.Random(seed)
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    with path.open("w") as out:
        out.write("user_id,item_id,event,value,timestamp\n")
        for n in range(events):
            name = rng.choice(NAMES)
            value = f"{rng.randint(1, 5)}" if name == "rate" else ""
            if bad_every and n % bad_every == bad_every - 1:
                value = "n/a"
            when = start + n * 7
            stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if iso else when
            out.write(f"user-{rng.randrange(users)},m{rng.randrange(items)},{name},{value},{stamp}\n")


def ndjson_write(path: Path, *, events: int, users: int, items: int, seed: int = 3) -> None:
    """The same random events as Segment track messages, one per line."""
    rng = random.Random(seed)
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    with path.open("w") as out:
        for n in range(events):
            name = rng.choice(NAMES)
            properties: dict = {"item_id": f"m{rng.randrange(items)}"}
            if name == "rate":
                properties["value"] = rng.randint(1, 5)
            when = datetime.fromtimestamp(start + n * 7, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = {"userId": f"user-{rng.randrange(users)}", "event": name, "properties": properties,
                       "timestamp": when}  # fmt: skip
            out.write(json.dumps(message) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    parser.add_argument("--writers", type=int, help="import_events --writers (default IMPORT_WRITERS, 2)")
    parser.add_argument("--iso", action="store_true", help="ISO 8601 timestamps instead of Unix seconds")
    parser.add_argument("--bad-every", type=int, default=0, help="one bad row (value 'n/a') every N rows")
    parser.add_argument("--ndjson", action="store_true", help="Segment messages (NDJSON) instead of CSV")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    var = tempfile.mkdtemp(prefix="rs-bench-import-")
    env = {**os.environ, "RECSITE_VAR_DIR": var, "LOG_LEVEL": "WARNING"}
    if url:
        database_reset(url)
    manage(env, "migrate", "-v0")
    catalog_load(env, args.items)
    if args.ndjson:
        path = Path(var) / "events.ndjson"
        ndjson_write(path, events=args.events, users=args.users, items=args.items)
    else:
        path = Path(var) / "events.csv"
        csv_write(
            path,
            events=args.events,
            users=args.users,
            items=args.items,
            iso=args.iso,
            bad_every=args.bad_every,
        )
    load_before = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "manage.py", "import_events", str(path), "--chunk-size", str(args.chunk_size)]
    if args.writers:
        command += ["--writers", str(args.writers)]
    with BackendCpu(url) if url else contextlib.nullcontext() as backend_cpu:
        done = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    command_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    backend = "PostgreSQL" if url else "SQLite"
    kind = "NDJSON messages" if args.ndjson else "CSV rows"
    print(f"backend: {backend}; {args.events:,} {kind} ({args.users:,} users, {args.items:,} items)")
    print(f"import: {elapsed:.1f} s, {args.events / elapsed:,.0f} events/s (including process start)")
    print("import_events said: " + " | ".join(done.stdout.strip().splitlines()[-2:]))
    cpu = f"CPU: import_events process {command_cpu:.1f} s"
    if url:
        cpu += f", PostgreSQL backends {backend_cpu.seconds:.1f} s"
        command_cpu += backend_cpu.seconds
    print(f"{cpu}; {command_cpu / args.events * 1e6:.0f} us of CPU per event")
    print(f"load average (1 min) before / after the run: {load_before} / {load_average()}")
    print("reproduce: " + ("DATABASE_URL=... " if url else "") + "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
