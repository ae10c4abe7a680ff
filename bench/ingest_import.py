"""Bulk import speed: `manage.py import_events` on a generated CSV, fresh database.

DATABASE_URL=postgres://postgres@127.0.0.1:5432/rs_bench_import .venv/bin/python bench/ingest_import.py
.venv/bin/python bench/ingest_import.py --events 200000      # SQLite
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_batch import ROOT, catalog_load, database_reset, load_average, manage

NAMES = ["play", "complete", "view", "Video Playback Started", "Product Viewed", "rate", "add_to_list"]


def csv_write(path: Path, *, events: int, users: int, items: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    with path.open("w") as out:
        out.write("user_id,item_id,event,value,timestamp\n")
        for n in range(events):
            name = rng.choice(NAMES)
            value = f"{rng.randint(1, 5)}" if name == "rate" else ""
            out.write(f"user-{rng.randrange(users)},m{rng.randrange(items)},{name},{value},{start + n * 7}\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    var = tempfile.mkdtemp(prefix="rs-bench-import-")
    env = {**os.environ, "RECSITE_VAR_DIR": var, "LOG_LEVEL": "WARNING"}
    if url:
        database_reset(url)
    manage(env, "migrate", "-v0")
    catalog_load(env, args.items)
    path = Path(var) / "events.csv"
    csv_write(path, events=args.events, users=args.users, items=args.items)
    load_before = load_average()
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "import_events", str(path), "--chunk-size", str(args.chunk_size)],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    backend = "PostgreSQL" if url else "SQLite"
    print(f"backend: {backend}; {args.events:,} CSV rows ({args.users:,} users, {args.items:,} items)")
    print(f"import: {elapsed:.1f} s, {args.events / elapsed:,.0f} events/s (including process start)")
    print(f"load average (1 min) before / after the run: {load_before} / {load_average()}")
    print("reproduce: " + ("DATABASE_URL=... " if url else "") + "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
