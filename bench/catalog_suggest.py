"""Benchmark: tag-suggestion training time and quality (precision@3, recall@3 on held-out items).

    .venv/bin/python bench/catalog_suggest.py                 # synthetic 100,000 items + demo + MovieLens
    .venv/bin/python bench/catalog_suggest.py --only synthetic --items 20000

Runs the pure module (catalog/suggestions.py) the Celery task uses, without a database:
- synthetic: items whose text mixes tag-specific words into random filler (1-4 tags each, 200 tags);
- demo: the demo catalog from recsite.demo.demo_generate (titles, descriptions, tags, viewers);
- movielens: ../shared/data/ml-latest-small, genres from title text + who rated what.
Timing = the training task's work (catalog.suggestions.train): TF-IDF of all items, held-out
evaluation fit, final fit, suggestions for all items; the database reads and writes around it
are not included. Prints the load average next to the figures, and the CPU time: the work runs on one core, so
on a shared machine the CPU time is what an idle machine's wall-clock time would be.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MOVIELENS = ROOT.parent / "shared" / "data" / "ml-latest-small"

from catalog import suggestions as ml  # noqa: E402


def synthetic(n: int, n_tags: int = 200, seed: int = 3):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(20_000)]
    tag_words = rng.integers(0, len(vocab), size=(n_tags, 12))
    popularity = rng.zipf(1.6, size=n_tags).astype(float)
    popularity /= popularity.sum()
    texts, labels = [], []
    for _ in range(n):
        chosen = rng.choice(n_tags, size=int(rng.integers(1, 5)), replace=False, p=popularity)
        words = [vocab[w] for w in rng.integers(0, len(vocab), 30)]
        for t in chosen:
            words += [vocab[w] for w in rng.choice(tag_words[t], size=3)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append([int(t) for t in chosen])
    return texts, labels, None


def demo():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    import django

    django.setup()  # the generator is pure, but its module imports the models
    from recsite.demo import demo_generate

    data = demo_generate(
        seed=7, items=1200, profiles=2500, events=220_000, now=datetime(2026, 11, 30, tzinfo=UTC)
    )
    paths = sorted({p for item in data.items for p in item.tag_paths if "/" in p})
    column = {p: n for n, p in enumerate(paths)}
    texts = [f"{i.title}\n{i.description}" for i in data.items]
    labels = [[column[p] for p in i.tag_paths if p in column] for i in data.items]
    pairs = {(e.item, e.profile) for e in data.events if e.item is not None}
    items = np.array([p[0] for p in pairs])
    people = np.array([p[1] for p in pairs])
    return texts, labels, (items, people)


def movielens():
    with (MOVIELENS / "movies.csv").open(encoding="utf-8") as f:
        movies = list(csv.DictReader(f))
    genres = sorted({g for m in movies for g in m["genres"].split("|") if g != "(no genres listed)"})
    column = {g: n for n, g in enumerate(genres)}
    index = {m["movieId"]: n for n, m in enumerate(movies)}
    texts = [m["title"] for m in movies]
    labels = [[column[g] for g in m["genres"].split("|") if g in column] for m in movies]
    users: dict[str, int] = defaultdict(lambda: len(users))
    items, people = [], []
    with (MOVIELENS / "ratings.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            items.append(index[r["movieId"]])
            people.append(users[r["userId"]])
    return texts, labels, (np.array(items), np.array(people))


def run(name: str, texts, labels, interactions) -> None:
    tags = np.array(sorted({t for ts in labels for t in ts}))
    rejected = [[] for _ in texts]
    start, cpu = time.perf_counter(), time.process_time()
    training = ml.train(texts, labels, rejected, tags, interactions=interactions, k=5)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    m = training.metrics.as_dict()
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in training.seconds.items())
    print(
        f"{name:<10} items={len(texts):>7,} tags={len(tags):>4} "
        f"co-consumption={'yes' if training.co_consumption else 'no ':<3} "
        f"precision@3={m['precision@3']:.3f} recall@3={m['recall@3']:.3f} "
        f"(baseline p@3 {m['baseline_precision@3']:.3f}) time: {steps} = {total:.1f} s "
        f"(CPU {cpu:.1f} s)"
    )
    if interactions is not None:
        text_only = ml.holdout_evaluate(texts, labels, rejected, tags).as_dict()
        print(
            f"{'':<10} text only: precision@3={text_only['precision@3']:.3f} "
            f"recall@3={text_only['recall@3']:.3f}"
        )


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--only", choices=["synthetic", "demo", "movielens"])
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {_load()}"
    )
    if args.only in (None, "synthetic"):
        run("synthetic", *synthetic(args.items))
    if args.only in (None, "demo"):
        run("demo", *demo())
    if args.only in (None, "movielens"):
        if (MOVIELENS / "movies.csv").exists():
            run("movielens", *movielens())
        else:
            print(f"movielens: skipped, {MOVIELENS} not found")
    print(f"load average at the end: {_load()}")
    print(
        f"reproduce: .venv/bin/python bench/catalog_suggest.py --items {args.items}"
        + (f" --only {args.only}" if args.only else "")
    )


if __name__ == "__main__":
    main()
