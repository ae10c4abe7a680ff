"""Speed of the whole offline pipeline per algorithm: load, split (chronological, last 20%
per user), fit, evaluate (all metrics at k=10), precompute the top-100 list of every user.

Datasets: MovieLens ml-latest-small (positives, see bench/movielens.py) for every algorithm
(target < 30 s each), and a synthetic ML-1M-sized set (6,000 users x 3,700 items x 1,000,000
interactions with power-law popularity and planted taste clusters) for ALS, EASE and
item-kNN (target < 60 s each). Each run is a separate process limited to 2 threads, so its
peak memory is its own.

Reproduce: .venv/bin/python bench/recommenders_speed.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
threadpool_limits(2)  # the benchmark machine has 2 cores

import movielens  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from personalization import evaluation, recommenders  # noqa: E402

SMALL = ["popularity", "item_knn", "ease", "als", "content", "hybrid"]
LARGE = ["als", "ease", "item_knn"]
LIMITS = {"ml-latest-small": 30.0, "synthetic ML-1M": 60.0}


class Dataset:
    def __init__(self, user_index, item_index, timestamps, n_users, n_items, tags, genres=None, texts=None):
        self.user_index, self.item_index, self.timestamps = user_index, item_index, timestamps
        self.n_users, self.n_items, self.tags = n_users, n_items, tags
        self.genres, self.texts = genres, texts

    def matrix(self, mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix(
            (np.ones(int(mask.sum()), dtype=np.float32), (self.user_index[mask], self.item_index[mask])),
            shape=(self.n_users, self.n_items),
        )


def load_small() -> Dataset:
    d = movielens.load()
    return Dataset(
        d.user_index, d.item_index, d.timestamps, d.n_users, d.n_items, d.genre_matrix, d.genres, d.texts
    )


def synthetic(
    n_users: int = 6_000,
    n_items: int = 3_700,
    n_interactions: int = 1_000_000,
    n_clusters: int = 20,
    in_cluster: float = 0.6,
    seed: int = 0,
) -> Dataset:
    """Zipf-like item popularity (exponent 0.9), log-normal user activity, and planted
    clusters: each draw comes from the user's cluster with probability ``in_cluster``,
    otherwise from the whole catalogue, popularity-weighted either way. Duplicate pairs are
    dropped and more drawn until ``n_interactions`` distinct pairs exist."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = popularity[rng.permutation(n_items)]
    item_cluster = rng.integers(0, n_clusters, n_items)
    user_cluster = rng.integers(0, n_clusters, n_users)
    activity = rng.lognormal(0.0, 0.8, n_users)
    activity /= activity.sum()
    global_cdf = np.cumsum(popularity) / popularity.sum()
    # Per-cluster CDFs laid end to end: cluster c occupies the value range (c, c + 1].
    by_cluster = np.lexsort((np.arange(n_items), item_cluster))
    weights = popularity[by_cluster]
    cluster_of = item_cluster[by_cluster]
    totals = np.bincount(cluster_of, weights=weights, minlength=n_clusters)
    cumulative = np.cumsum(weights) - np.concatenate(([0.0], np.cumsum(totals)[:-1]))[cluster_of]
    cluster_cdf = cluster_of + cumulative / totals[cluster_of]
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n_interactions:
        draws = 2 * (n_interactions - len(keys)) + 1000
        users = rng.choice(n_users, size=draws, p=activity)
        local = rng.random(draws) < in_cluster
        items = np.minimum(np.searchsorted(global_cdf, rng.random(draws)), n_items - 1)
        position = np.searchsorted(cluster_cdf, user_cluster[users[local]] + rng.random(local.sum()))
        items[local] = by_cluster[np.minimum(position, n_items - 1)]
        keys = np.sort(np.concatenate((keys, users.astype(np.int64) * n_items + items)))
        keys = keys[np.concatenate(([True], np.diff(keys) > 0))]
    keys = rng.choice(keys, size=n_interactions, replace=False)
    # Two tags per item, for diversity and calibration: its cluster and one of 10 facets.
    tag_columns = np.stack([item_cluster, n_clusters + rng.integers(0, 10, n_items)], axis=1).ravel()
    tag_rows = np.repeat(np.arange(n_items), 2)
    tags = sp.csr_matrix((np.ones(2 * n_items), (tag_rows, tag_columns)), shape=(n_items, n_clusters + 10))
    return Dataset(keys // n_items, keys % n_items, rng.random(n_interactions), n_users, n_items, tags)


def fit(name: str, data: Dataset, train: sp.csr_matrix) -> recommenders.Recommender:
    if name == "popularity":
        return recommenders.popularity_fit(user_items=train)
    if name == "item_knn":
        return recommenders.item_knn_fit(user_items=train, neighbours=100, shrink=10.0)
    if name == "ease":
        return recommenders.ease_fit(user_items=train, l2=200.0)
    if name == "als":
        return recommenders.als_fit(user_items=train, num_threads=2)
    content = recommenders.content_fit(item_tags=data.genres, item_texts=data.texts, user_items=train)
    if name == "content":
        return content
    ease = recommenders.ease_fit(user_items=train, l2=200.0)
    return recommenders.HybridModel(models=[ease, content], weights=[0.9, 0.1])


def run_one(dataset: str, name: str) -> dict:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    data = load_small() if dataset == "ml-latest-small" else synthetic()
    timings["load"] = time.perf_counter() - start
    mark = time.perf_counter()
    split = evaluation.chronological_split(data.user_index, data.timestamps, test_ratio=0.2)
    train, test = data.matrix(split.train), data.matrix(split.test)
    timings["split"] = time.perf_counter() - mark
    mark = time.perf_counter()
    model = fit(name, data, train)
    timings["fit"] = time.perf_counter() - mark
    mark = time.perf_counter()
    metrics = evaluation.evaluate_model(model, train, test, k=10, item_tags=data.tags)
    timings["evaluate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    items, _ = model.recommend(np.arange(data.n_users), 100)
    timings["precompute"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start
    mark = time.perf_counter()
    size = len(model.to_bytes())
    timings["serialise"] = time.perf_counter() - mark
    return {
        "timings": timings,
        "ndcg": metrics["ndcg@10"],
        "filled": float((items >= 0).mean()),
        "bytes": size,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "interactions": len(data.user_index),
    }


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(run_one(sys.argv[2], sys.argv[3])))
        return 0
    movielens.load()  # exits with a clear message when the data is absent
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load} at start; 2 threads per run, one process each.\n")
    print(
        "| dataset | algorithm | load | split | fit | evaluate | top-100 all users | total s | limit "
        "| nDCG@10 | to_bytes s | model MiB | peak RSS MiB |"
    )
    print("|---" * 13 + "|")
    failures = []
    for dataset, names in (("ml-latest-small", SMALL), ("synthetic ML-1M", LARGE)):
        for name in names:
            out = subprocess.run(
                [sys.executable, __file__, "--one", dataset, name],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            t = result["timings"]
            limit = LIMITS[dataset]
            print(
                f"| {dataset} | {name} | {t['load']:.1f} | {t['split']:.1f} | {t['fit']:.1f} | "
                f"{t['evaluate']:.1f} | "
                f"{t['precompute']:.1f} | **{t['total']:.1f}** | {limit:.0f} | {result['ndcg']:.4f} | "
                f"{t['serialise']:.1f} | {result['bytes'] / 2**20:.1f} | {result['peak_mib']:.0f} |",
                flush=True,
            )
            if t["total"] > limit:
                failures.append(f"{dataset} {name}: {t['total']:.1f} s > {limit:.0f} s")
    print("\nload = read the CSVs (ml-latest-small) or generate the data (synthetic). total excludes")
    print("to_bytes (the npz archive stored in the database), reported on its own.")
    print("Reproduce: .venv/bin/python bench/recommenders_speed.py")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
