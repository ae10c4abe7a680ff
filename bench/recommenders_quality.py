"""Offline quality of every recommender on MovieLens ml-latest-small.

Two splits of the positive interactions (rating >= 3.5, see bench/movielens.py): the default
chronological one (each user's latest 20% held out) and a random per-user 75/25 split.
Every algorithm's metrics at k=10 are printed as a Markdown table, then three checks:
the best model beats popularity on nDCG@10 by >= 1.5x, and EASE and ALS each score within
3% of a straightforward reference run on the same split (a plain float64 numpy EASE with the
same lambda; ``implicit`` ALS called directly with the same settings), both evaluated with
the scalar per-user metric functions rather than the batch ones.

Reproduce: .venv/bin/python bench/recommenders_quality.py
"""

from __future__ import annotations

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

K = 10
EASE_L2 = 200.0
ALS = {"factors": 64, "regularization": 0.05, "iterations": 15, "alpha": 10.0, "random_state": 0}
ALS_SMALL = {**ALS, "factors": 32, "alpha": 5.0}
KNN = {"neighbours": 100, "shrink": 10.0}
COLUMNS = [
    ("ndcg@10", "nDCG"),
    ("precision@10", "P"),
    ("recall@10", "R"),
    ("map@10", "MAP"),
    ("hit_rate@10", "HR"),
    ("coverage", "cov"),
    ("diversity", "ILD"),
    ("novelty", "nov"),
    ("avg_popularity", "ARP"),
    ("gini", "Gini"),
    ("miscalibration", "MC"),
]


class Reranked:
    """Re-ranks a model's top-``pool`` list with MMR or Steck's calibration (bench only)."""

    user_items = None

    def __init__(self, model, how: str, lambda_: float, genres: sp.csr_matrix, pool: int = 50):
        self.model, self.how, self.lambda_, self.genres, self.pool = model, how, lambda_, genres, pool

    def recommend(self, rows, k, *, exclude_seen=True, chunk_size=None):
        items, scores = self.model.recommend(rows, self.pool, exclude_seen=exclude_seen)
        out = np.full((rows.shape[0], k), -1, dtype=np.int64)
        for u in range(rows.shape[0]):
            if self.how == "mmr":
                picked = recommenders.mmr_rerank(
                    candidates=items[u], scores=scores[u], item_vectors=self.genres, k=k, lambda_=self.lambda_
                )
            else:
                history = recommenders.tag_distribution(
                    item_tags=self.genres, items=rows[u].indices, weights=rows[u].data
                )
                picked = recommenders.calibrate_rerank(
                    candidates=items[u],
                    scores=scores[u],
                    item_tags=self.genres,
                    history=history,
                    k=k,
                    lambda_=self.lambda_,
                )
            out[u, : len(picked)] = picked
        return out, np.zeros(out.shape, dtype=np.float32)


def relevant_sets(train: sp.csr_matrix, test: sp.csr_matrix) -> dict[int, set[int]]:
    out = {}
    for u in range(train.shape[0]):
        items = set(test[u].indices.tolist()) - set(train[u].indices.tolist())
        if items:
            out[u] = items
    return out


def reference_ease(train: sp.csr_matrix, relevant: dict[int, set[int]], n_items: int) -> float:
    """Plain numpy EASE (float64, items with training interactions) evaluated by loops."""
    items = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel())
    x = train[:, items].toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + EASE_L2 * np.eye(len(items)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    users = sorted(relevant)
    scores = x[users] @ b
    scores[x[users] > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :K]
    rankings = {u: items[top[row]].tolist() for row, u in enumerate(users)}
    return evaluation.evaluate_rankings(rankings, relevant, k=K, n_items=n_items)["ndcg@10"]


def reference_als(train: sp.csr_matrix, relevant: dict[int, set[int]], n_items: int, settings: dict) -> float:
    """implicit's ALS called directly, recommending with its own filter, evaluated by loops."""
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(**settings, num_threads=2)
        model.fit(train, show_progress=False)
    users = np.array(sorted(relevant))
    ids, _ = model.recommend(users, train[users], N=K, filter_already_liked_items=True)
    rankings = {int(u): ids[row].tolist() for row, u in enumerate(users)}
    return evaluation.evaluate_rankings(rankings, relevant, k=K, n_items=n_items)["ndcg@10"]


def models(data: movielens.MovieLens, train: sp.csr_matrix):
    """(name, fit) pairs, fitted lazily so that fit times can be measured."""
    cache = {}

    def ease():
        if "ease" not in cache:
            cache["ease"] = recommenders.ease_fit(user_items=train, l2=EASE_L2)
        return cache["ease"]

    def content():
        if "content" not in cache:
            cache["content"] = recommenders.content_fit(
                item_tags=data.genres, item_texts=data.texts, user_items=train, weighting="bm25"
            )
        return cache["content"]

    return [
        ("popularity", lambda: recommenders.popularity_fit(user_items=train)),
        ("item-kNN (k=100, shrink=10)", lambda: recommenders.item_knn_fit(user_items=train, **KNN)),
        (f"EASE (lambda={EASE_L2:g})", ease),
        ("ALS (64 f, alpha=10)", lambda: recommenders.als_fit(user_items=train, **ALS, num_threads=2)),
        ("ALS (32 f, alpha=5)", lambda: recommenders.als_fit(user_items=train, **ALS_SMALL, num_threads=2)),
        ("content (BM25)", content),
        (
            "content (TF-IDF)",
            lambda: recommenders.content_fit(
                item_tags=data.genres, item_texts=data.texts, user_items=train, weighting="tfidf"
            ),
        ),
        (
            "hybrid 0.9 EASE + 0.1 content",
            lambda: recommenders.HybridModel(models=[ease(), content()], weights=[0.9, 0.1]),
        ),
        (
            "fallback EASE -> popularity",
            lambda: recommenders.FallbackModel(
                models=[ease(), recommenders.popularity_fit(user_items=train)]
            ),
        ),
        ("EASE + MMR (lambda=0.7)", lambda: Reranked(ease(), "mmr", 0.7, data.genre_matrix)),
        ("EASE + calibration (lambda=0.5)", lambda: Reranked(ease(), "calibration", 0.5, data.genre_matrix)),
    ]


def main() -> int:
    data = movielens.load()
    print(
        f"ml-latest-small: {data.ratings:,} ratings -> {len(data.user_index):,} positives (rating >= 3.5), "
        f"{data.n_users} users, {data.n_items:,} items; k={K}\n"
    )
    splits = {
        "chronological (last 20% per user)": evaluation.chronological_split(
            data.user_index, data.timestamps, test_ratio=0.2
        ),
        "random 75/25 per user (seed 0)": evaluation.random_split(data.user_index, test_ratio=0.25, seed=0),
    }
    failures = []
    for split_name, split in splits.items():
        train, test = data.matrix(split.train), data.matrix(split.test)
        print(f"### {split_name}: {train.nnz:,} train / {test.nnz:,} test interactions\n")
        print("| model | " + " | ".join(label for _, label in COLUMNS) + " | fit s |")
        print("|---" * (len(COLUMNS) + 2) + "|")
        ndcg = {}
        for name, fit in models(data, train):
            start = time.perf_counter()
            model = fit()
            fit_seconds = time.perf_counter() - start
            result = evaluation.evaluate_model(model, train, test, k=K, item_tags=data.genre_matrix)
            ndcg[name] = result["ndcg@10"]
            cells = " | ".join(
                f"{result[key]:.1f}" if key == "avg_popularity" else f"{result[key]:.4f}"
                for key, _ in COLUMNS
            )
            print(f"| {name} | {cells} | {fit_seconds:.1f} |", flush=True)
            if getattr(model, "message", ""):
                print(f"note: {model.message}")
        relevant = relevant_sets(train, test)
        ease_name = f"EASE (lambda={EASE_L2:g})"
        references = {
            ease_name: reference_ease(train, relevant, data.n_items),
            "ALS (64 f, alpha=10)": reference_als(train, relevant, data.n_items, ALS),
            "ALS (32 f, alpha=5)": reference_als(train, relevant, data.n_items, ALS_SMALL),
        }
        print()
        best = max((v, n) for n, v in ndcg.items())
        ratio = best[0] / ndcg["popularity"]
        print(f"- best: {best[1]} nDCG@10 {best[0]:.4f} = {ratio:.2f}x popularity ({ndcg['popularity']:.4f})")
        if ratio < 1.5:
            failures.append(f"{split_name}: best/popularity {ratio:.2f} < 1.5")
        for name, reference in references.items():
            gap = (ndcg[name] - reference) / reference
            print(f"- {name}: nDCG@10 {ndcg[name]:.4f} vs reference {reference:.4f} ({gap:+.2%})")
            if abs(gap) > 0.03:
                failures.append(f"{split_name}: {name} differs from its reference by {gap:+.2%}")
        print()
    print("Columns: nDCG/P/R/MAP/HR at 10; cov = catalogue coverage; ILD = 1 - mean pairwise genre Jaccard;")
    print(
        "nov = mean -log2 popularity; ARP = mean training popularity of listed items; Gini of item exposure;"
    )
    print("MC = miscalibration, Steck's KL(history genres || list genres), alpha=0.01.")
    print("Reproduce: .venv/bin/python bench/recommenders_quality.py")
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
