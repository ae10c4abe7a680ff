"""Recommender algorithms: pure functions and models over arrays (no Django imports).

Items and users are dense integer indices; callers map them to database ids. Interactions
are a user x item ``scipy.sparse.csr_matrix`` of positive strengths.

Every fitted model shares one interface (see ``Recommender``):

- ``recommend(users, k, exclude_seen=True) -> (items[n, k], scores[n, k])``: ``users`` is a
  csr matrix of interaction rows (any users, including new ones) or a list of training-user
  indices. Computed in batch, chunked over users to bound memory. Slots a model cannot fill
  (no evidence) hold item ``-1`` and score ``-inf``.
- ``similar_items(item, k) -> (items, scores)``.
- ``explain(user, items) -> list[dict]``: a structured reason per item.
- ``to_bytes()`` / ``model_from_bytes(data)``: an ``np.savez_compressed`` archive without
  pickles, safe to store in the database and load in web processes.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

Users = sp.spmatrix | sp.sparray | Sequence[int] | np.ndarray
Reason = dict[str, Any]

# Scores are computed for at most this many (user, item) cells at once (~128 MiB float32).
CHUNK_CELLS = 1 << 25


# --- Trending (time-decayed popularity) ------------------------------------------------


@dataclass(frozen=True)
class TrendingModel:
    """Items ranked by time-decayed interaction strength."""

    item_index: np.ndarray  # item indices, best first
    scores: np.ndarray  # matching scores, descending

    def top(self, k: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        for item, score in zip(self.item_index.tolist(), self.scores.tolist(), strict=True):
            if item in exclude:
                continue
            out.append((item, score))
            if len(out) == k:
                break
        return out


def _decayed(weights: np.ndarray, age_days: np.ndarray, half_life_days: float | None) -> np.ndarray:
    if half_life_days is not None and half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    if half_life_days is None:
        return np.asarray(weights, dtype=np.float64)
    return weights * np.power(0.5, age_days / half_life_days)


def _ranked(scores: np.ndarray, candidates: np.ndarray, keep: int) -> TrendingModel:
    positive = candidates[scores[candidates] > 0]
    # Stable order: by score descending, then by item index for ties.
    order = positive[np.lexsort((positive, -scores[positive]))][:keep]
    return TrendingModel(item_index=order.astype(np.int64), scores=scores[order])


def trending_fit(
    *,
    item_index: np.ndarray,
    weights: np.ndarray,
    age_days: np.ndarray,
    n_items: int,
    half_life_days: float | None,
    keep: int,
) -> TrendingModel:
    """Score each item by the sum of its interaction weights, each halved every
    ``half_life_days`` of age (no decay when None), and keep the ``keep`` best."""
    decayed = _decayed(weights, age_days, half_life_days)
    scores = np.bincount(item_index, weights=decayed, minlength=n_items)
    return _ranked(scores, np.arange(n_items), keep)


def trending_fit_by_group(
    *,
    item_index: np.ndarray,
    weights: np.ndarray,
    age_days: np.ndarray,
    n_items: int,
    half_life_days: float | None,
    keep: int,
    item_groups: sp.spmatrix | sp.sparray | None = None,
    user_index: np.ndarray | None = None,
    user_groups: np.ndarray | None = None,
) -> dict[int, TrendingModel]:
    """Trending lists per group: per facet/tag when ``item_groups`` (items x groups, nonzero
    = member) is given ("New in <tag>"), or per segment when ``user_groups[user] -> segment``
    (-1 = none) is given with the interactions' ``user_index`` ("Popular in your segment")."""
    if (item_groups is None) == (user_groups is None):
        raise ValueError("give exactly one of item_groups or user_groups")
    decayed = _decayed(weights, age_days, half_life_days)
    out: dict[int, TrendingModel] = {}
    if item_groups is not None:
        scores = np.bincount(item_index, weights=decayed, minlength=n_items)
        members = sp.csc_matrix(item_groups)
        for group in range(members.shape[1]):
            items = members.indices[members.indptr[group] : members.indptr[group + 1]]
            out[group] = _ranked(scores, np.sort(items), keep)
        return out
    if user_index is None:
        raise ValueError("user_groups needs the interactions' user_index")
    segment = np.asarray(user_groups)[user_index]
    known = segment >= 0
    n_groups = int(segment[known].max()) + 1 if known.any() else 0
    flat = np.bincount(
        segment[known] * n_items + item_index[known], weights=decayed[known], minlength=n_groups * n_items
    ).reshape(n_groups, n_items)
    for group in range(n_groups):
        out[group] = _ranked(flat[group], np.arange(n_items), keep)
    return out


# --- Shared machinery ------------------------------------------------------------------


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top k of a dense score matrix, best first (ties: lower item index first).
    Non-finite (-inf) scores become item -1."""
    n, m = scores.shape
    kk = min(k, m)
    items = np.full((n, k), -1, dtype=np.int64)
    values = np.full((n, k), -np.inf, dtype=np.float32)
    if kk == 0 or n == 0:
        return items, values
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (n, 1))
    part.sort(axis=1)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    chosen = np.take_along_axis(part, order, axis=1)
    chosen_scores = np.take_along_axis(part_scores, order, axis=1)
    finite = np.isfinite(chosen_scores)
    items[:, :kk] = np.where(finite, chosen, -1)
    values[:, :kk] = np.where(finite, chosen_scores, -np.inf)
    return items, values


def _csr(matrix: Any, n_items: int | None = None) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32)
    out.sum_duplicates()
    out.eliminate_zeros()
    if n_items is not None and out.shape[1] != n_items:
        raise ValueError(f"interaction rows have {out.shape[1]} columns; the model has {n_items} items")
    return out


def _pack(kind: str, meta: dict, arrays: dict[str, np.ndarray], *, compress: bool = True) -> bytes:
    buffer = io.BytesIO()
    header = np.frombuffer(json.dumps({"kind": kind, **meta}).encode(), dtype=np.uint8)
    (np.savez_compressed if compress else np.savez)(buffer, __meta__=header, **arrays)
    return buffer.getvalue()


def _unpack(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    return meta, arrays


def _sparse_arrays(prefix: str, matrix: sp.spmatrix | None) -> dict[str, np.ndarray]:
    if matrix is None:
        return {}
    m = sp.csr_matrix(matrix)
    return {
        f"{prefix}_data": m.data,
        f"{prefix}_indices": m.indices,
        f"{prefix}_indptr": m.indptr,
        f"{prefix}_shape": np.array(m.shape),
    }


def _sparse_from(prefix: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix | None:
    if f"{prefix}_data" not in arrays:
        return None
    shape = tuple(int(x) for x in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )


def _first_row(result: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return result[0][0], result[1][0]


def _because(rows: sp.csr_matrix, contributions: np.ndarray) -> Reason | None:
    """The consumed item contributing most to a score, as a reason."""
    if contributions.size == 0 or not np.isfinite(contributions).any() or contributions.max() <= 0:
        return None
    return {"type": "because_you_watched", "item": int(rows.indices[int(np.argmax(contributions))])}


TRENDING_REASON: Reason = {"type": "trending"}


class Recommender:
    """Base class: subclasses implement ``_score`` (dense scores for a chunk of users,
    ``-inf`` where the model has no evidence), ``_arrays``/``_restore`` and ``_explain_one``."""

    kind: ClassVar[str] = ""
    n_items: int
    user_items: sp.csr_matrix | None  # the training interactions, for index-list users
    message: str = ""  # a note for people, e.g. when EASE capped the catalogue
    compress_default: ClassVar[bool] = True

    # -- batch recommendation
    def recommend(
        self, users: Users, k: int = 10, *, exclude_seen: bool = True, chunk_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._recommend(users, k, exclude_seen=exclude_seen, chunk_size=chunk_size)

    def scores(self, users: Users) -> np.ndarray:
        """Dense scores for (a small batch of) users: ``-inf`` where there is no evidence."""
        rows, ids = self._resolve(users)
        return self._score(rows, ids, slice(0, rows.shape[0]))

    def _recommend(
        self, users: Users, k: int, *, exclude_seen: bool, chunk_size: int | None, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0:
            raise ValueError("k must be positive")
        rows, ids = self._resolve(users)
        n = rows.shape[0]
        items = np.full((n, k), -1, dtype=np.int64)
        values = np.full((n, k), -np.inf, dtype=np.float32)
        step = chunk_size or max(1, CHUNK_CELLS // max(self.n_items, 1))
        for start in range(0, n, step):
            part = slice(start, min(n, start + step))
            chunk_rows = rows[part]
            scores = self._score(chunk_rows, None if ids is None else ids[part], part, **options)
            if exclude_seen:
                _mask_seen(scores, chunk_rows)
            items[part], values[part] = top_k(scores, k)
        return items, values

    def _resolve(self, users: Users) -> tuple[sp.csr_matrix, np.ndarray | None]:
        if sp.issparse(users):
            return _csr(users, self.n_items), None
        ids = np.asarray(users, dtype=np.int64).reshape(-1)
        if self.user_items is None:
            raise ValueError("this model was saved without interactions: pass interaction rows")
        if ids.size and (ids.min() < 0 or ids.max() >= self.user_items.shape[0]):
            raise IndexError("unknown user index: pass interaction rows for users unseen in training")
        return self.user_items[ids], ids

    def _score(self, rows: sp.csr_matrix, ids: np.ndarray | None, part: slice, **options: Any) -> np.ndarray:
        raise NotImplementedError

    # -- similar items
    def similar_items(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} has no item similarity")

    # -- explanations
    def explain(self, user: Users | int, items: Sequence[int], **options: Any) -> list[Reason]:
        """A structured reason for each of ``items`` recommended to one user (a 1-row csr or
        a training-user index)."""
        rows, ids = self._resolve(user if sp.issparse(user) else [int(user)])  # type: ignore[arg-type]
        return [
            self._explain_one(rows[0], None if ids is None else int(ids[0]), int(i), **options) for i in items
        ]

    def _explain_one(self, row: sp.csr_matrix, user: int | None, item: int, **options: Any) -> Reason:
        return dict(TRENDING_REASON)

    # -- serialisation
    def to_bytes(self, *, with_interactions: bool = True, compress: bool | None = None) -> bytes:
        """An npz archive. ``with_interactions`` keeps the training matrix (needed to
        recommend by user index). ``compress`` defaults to the model's ``compress_default``:
        off for EASE, whose dense weights shrink by only ~25% at 30x the time."""
        if compress is None:
            compress = self.compress_default
        meta, arrays = self._arrays()
        meta = {"n_items": self.n_items, "message": self.message, **meta}
        if with_interactions:
            arrays.update(_sparse_arrays("user_items", self.user_items))
        return _pack(self.kind, meta, arrays, compress=compress)

    @classmethod
    def from_bytes(cls, data: bytes) -> Recommender:
        model = model_from_bytes(data)
        if not isinstance(model, cls):
            raise TypeError(f"the bytes hold a {type(model).__name__}, not a {cls.__name__}")
        return model

    def _arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        raise NotImplementedError

    @classmethod
    def _restore(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Recommender:
        raise NotImplementedError


def _mask_seen(scores: np.ndarray, rows: sp.csr_matrix) -> None:
    r, c = rows.nonzero()
    scores[r, c] = -np.inf


def _no_evidence(scores: np.ndarray) -> np.ndarray:
    scores[scores == 0] = -np.inf
    return scores


_KINDS: dict[str, type[Recommender]] = {}


def _register(cls: type[Recommender]) -> type[Recommender]:
    _KINDS[cls.kind] = cls
    return cls


def model_from_bytes(data: bytes) -> Recommender:
    """Load any model saved with ``to_bytes`` (no pickles are involved)."""
    meta, arrays = _unpack(data)
    cls = _KINDS.get(meta["kind"])
    if cls is None:
        raise ValueError(f"unknown model kind {meta['kind']!r}")
    model = cls._restore(meta, arrays)
    model.n_items = int(meta["n_items"])
    model.message = meta.get("message", "")
    model.user_items = _sparse_from("user_items", arrays)
    return model


def _items_by_count(matrix: sp.csr_matrix) -> np.ndarray:
    return np.bincount(matrix.indices, minlength=matrix.shape[1])


# --- Popularity ------------------------------------------------------------------------


@_register
class PopularityModel(Recommender):
    """The same ranked list for everyone (minus what they consumed)."""

    kind = "popularity"

    def __init__(self, *, item_scores: np.ndarray, user_items: sp.csr_matrix | None = None):
        self.item_scores = np.asarray(item_scores, dtype=np.float32)
        self.n_items = len(self.item_scores)
        self.user_items = user_items

    def _score(self, rows, ids, part, **options):
        scores = np.broadcast_to(self.item_scores, (rows.shape[0], self.n_items)).copy()
        return _no_evidence(scores)

    def similar_items(self, item, k=10):
        scores = self.item_scores.copy()
        scores[item] = 0
        return _first_row(top_k(_no_evidence(scores[None, :]), k))

    def _arrays(self):
        return {}, {"item_scores": self.item_scores}

    @classmethod
    def _restore(cls, meta, arrays):
        return cls(item_scores=arrays["item_scores"])


def popularity_fit(*, user_items: Any, trending: TrendingModel | None = None) -> PopularityModel:
    """Popularity by number of users per item, or the scores of a fitted ``TrendingModel``."""
    matrix = _csr(user_items)
    if trending is None:
        scores = _items_by_count(matrix).astype(np.float32)
    else:
        scores = np.zeros(matrix.shape[1], dtype=np.float32)
        scores[trending.item_index] = trending.scores
    return PopularityModel(item_scores=scores, user_items=matrix)


# --- Item-kNN --------------------------------------------------------------------------


@_register
class ItemKNNModel(Recommender):
    """score(u, i) = sum over consumed j in N(i) of r_uj * sim(j, i), with
    sim(j, i) = x_j . x_i / (|x_j| |x_i| + shrink) and N(i) the ``neighbours`` most similar
    items of i. ``similarity[j, i]`` holds sim(j, i) for j in N(i)."""

    kind = "item_knn"

    def __init__(self, *, similarity: sp.csr_matrix, user_items: sp.csr_matrix | None = None, params=None):
        self.similarity = sp.csr_matrix(similarity, dtype=np.float32)
        self.n_items = self.similarity.shape[0]
        self.user_items = user_items
        self.params = params or {}

    def _score(self, rows, ids, part, **options):
        return _no_evidence((rows @ self.similarity).toarray())

    def similar_items(self, item, k=10):
        column = self.similarity[:, [item]].toarray().ravel()
        return _first_row(top_k(_no_evidence(column[None, :]), k))

    def _explain_one(self, row, user, item, **options):
        weights = self.similarity[row.indices][:, [item]].toarray().ravel()
        return _because(row, row.data * weights) or dict(TRENDING_REASON)

    def explain(self, user, items, **options):
        # One slice of the similarity matrix for all items, instead of one per item.
        rows, _ = self._resolve(user if sp.issparse(user) else [int(user)])
        row = rows[0]
        items = [int(i) for i in items]
        if not items:
            return []
        block = self.similarity[row.indices][:, items].toarray()
        return [_because(row, row.data * block[:, n]) or dict(TRENDING_REASON) for n in range(len(items))]

    def _arrays(self):
        return {"params": self.params}, _sparse_arrays("similarity", self.similarity)

    @classmethod
    def _restore(cls, meta, arrays):
        return cls(similarity=_sparse_from("similarity", arrays), params=meta["params"])


def item_knn_fit(
    *, user_items: Any, neighbours: int = 100, shrink: float = 10.0, chunk_items: int = 2048
) -> ItemKNNModel:
    """Cosine item-item similarity on interaction strengths, shrunk, keeping each item's
    ``neighbours`` best neighbours. Works on column blocks to bound memory."""
    if neighbours <= 0 or shrink < 0:
        raise ValueError("neighbours must be positive and shrink non-negative")
    x = _csr(user_items)
    n_items = x.shape[1]
    # Items without interactions have no neighbours and are nobody's neighbour.
    active = np.flatnonzero(np.diff(x.tocsc().indptr))
    xa = x[:, active]
    by_item = xa.T.tocsr()  # active items x users
    norms = np.sqrt(np.asarray(xa.multiply(xa).sum(axis=0)).ravel()).astype(np.float32)
    n_active = len(active)
    keep = min(neighbours, max(n_active - 1, 0))
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, n_active if keep else 0, chunk_items):
        stop = min(n_active, start + chunk_items)
        # Row t of the block: sim(target t, every item) = sim(every item, target t).
        sim = (by_item[start:stop] @ xa).toarray()
        sim /= np.outer(norms[start:stop], norms) + shrink + 1e-12
        sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if keep < n_active:
            best = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
        else:
            best = np.tile(np.arange(n_active), (stop - start, 1))
        values = np.take_along_axis(sim, best, axis=1)
        positive = values > 0
        rows_out.append(active[best[positive]])
        cols_out.append(active[np.broadcast_to(np.arange(start, stop)[:, None], best.shape)[positive]])
        vals_out.append(values[positive])
    if rows_out:
        data = (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out)))
        similarity = sp.csr_matrix(data, shape=(n_items, n_items), dtype=np.float32)
    else:
        similarity = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return ItemKNNModel(
        similarity=similarity, user_items=x, params={"neighbours": neighbours, "shrink": shrink}
    )


# --- EASE ------------------------------------------------------------------------------


@_register
class EASEModel(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck 2019): scores = X B over the kept items."""

    kind = "ease"
    compress_default = False

    def __init__(self, *, weights: np.ndarray, items: np.ndarray, n_items: int, user_items=None, params=None):
        self.weights = np.asarray(weights, dtype=np.float32)  # kept x kept, zero diagonal
        self.items = np.asarray(items, dtype=np.int64)  # kept item indices
        self.n_items = n_items
        self.user_items = user_items
        self.params = params or {}
        self._position = np.full(n_items, -1, dtype=np.int64)
        self._position[self.items] = np.arange(len(self.items))

    def _score(self, rows, ids, part, **options):
        kept = rows[:, self.items]
        scores = np.full((rows.shape[0], self.n_items), -np.inf, dtype=np.float32)
        scores[:, self.items] = kept @ self.weights
        scores[np.diff(kept.indptr) == 0] = -np.inf
        return scores

    def similar_items(self, item, k=10):
        position = self._position[item]
        scores = np.full((1, self.n_items), -np.inf, dtype=np.float32)
        if position >= 0:
            scores[0, self.items] = self.weights[position]
            scores[0, item] = -np.inf
        return _first_row(top_k(scores, k))

    def _explain_one(self, row, user, item, **options):
        position = self._position[item]
        consumed = self._position[row.indices]
        known = consumed >= 0
        if position < 0 or not known.any():
            return dict(TRENDING_REASON)
        contributions = np.full(len(row.indices), -np.inf, dtype=np.float32)
        contributions[known] = row.data[known] * self.weights[consumed[known], position]
        return _because(row, contributions) or dict(TRENDING_REASON)

    def _arrays(self):
        return {"params": self.params}, {"weights": self.weights, "items": self.items}

    @classmethod
    def _restore(cls, meta, arrays):
        return cls(
            weights=arrays["weights"], items=arrays["items"], n_items=meta["n_items"], params=meta["params"]
        )


def ease_fit(
    *, user_items: Any, l2: float = 200.0, max_items: int = 10_000, solver: str = "auto"
) -> EASEModel:
    """Closed form B = I - P diagMat(1 / diag(P)), P = (X^T X + l2 I)^-1, in float32.

    Memory grows with the square of the catalogue, so only items with interactions are
    kept, and at most the ``max_items`` most popular of them; ``model.message`` says so.
    ``solver``: "cholesky" inverts the item Gram matrix; "woodbury" uses
    P = (I - X^T (l2 I + X X^T)^-1 X) / l2, much cheaper when users are fewer than items;
    "auto" picks the cheaper."""
    if l2 <= 0:
        raise ValueError("l2 must be positive")
    if solver not in ("auto", "cholesky", "woodbury"):
        raise ValueError("solver must be 'auto', 'cholesky' or 'woodbury'")
    x = _csr(user_items)
    n_items = x.shape[1]
    counts = _items_by_count(x)
    active = np.flatnonzero(counts)
    message = ""
    if len(active) > max_items:
        order = active[np.lexsort((active, -counts[active]))]
        kept = np.sort(order[:max_items])
        message = (
            f"EASE kept the {max_items:,} most popular of {len(active):,} items with interactions to "
            f"bound memory (~{max_items**2 * 4 / 2**20:,.0f} MiB of weights); the other "
            f"{len(active) - max_items:,} are never recommended by this model."
        )
    else:
        kept = active
    xk = x[:, kept]
    xk = xk[np.diff(xk.indptr) > 0]  # users without kept items add nothing
    if solver == "woodbury" or (solver == "auto" and xk.shape[0] < len(kept)):
        precision = _ease_precision_woodbury(xk, l2)
    else:
        precision = _ease_precision_cholesky(xk, l2)
    diagonal = np.diag(precision).copy()
    precision /= -diagonal[None, :]
    precision[np.diag_indices_from(precision)] = 0.0
    params = {"l2": l2, "max_items": max_items}
    model = EASEModel(weights=precision, items=kept, n_items=n_items, user_items=x, params=params)
    model.message = message
    return model


def _ease_precision_cholesky(x: sp.csr_matrix, l2: float) -> np.ndarray:
    gram = (x.T @ x).toarray().astype(np.float32)
    gram[np.diag_indices_from(gram)] += l2
    factor, info = scipy.linalg.lapack.spotrf(gram, lower=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix is not positive definite (info={info})")
    precision, info = scipy.linalg.lapack.spotri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE inversion failed (info={info})")
    # spotri fills the lower triangle only.
    upper = np.triu(precision.T, k=1)
    precision = np.tril(precision)
    precision += upper
    return precision


def _ease_precision_woodbury(x: sp.csr_matrix, l2: float) -> np.ndarray:
    dense = x.toarray()  # users x items, float32
    small = (x @ x.T).toarray().astype(np.float64)
    small[np.diag_indices_from(small)] += l2
    solved = scipy.linalg.solve(small, dense.astype(np.float64), assume_a="pos").astype(np.float32)
    precision = dense.T @ solved
    precision *= -1.0 / l2
    precision[np.diag_indices_from(precision)] += 1.0 / l2
    return precision


# --- Implicit ALS ----------------------------------------------------------------------


@_register
class ALSModel(Recommender):
    """Matrix factorisation for implicit feedback (Hu, Koren, Volinsky), fitted by
    ``implicit``. Confidence follows ``implicit``: c_ui = alpha * r_ui for observed pairs
    (1 elsewhere). New interaction rows get their user factors by an exact solve."""

    kind = "als"

    def __init__(
        self, *, user_factors, item_factors, regularization: float, alpha: float, user_items=None, params=None
    ):
        self.user_factors = np.asarray(user_factors, dtype=np.float32)
        self.item_factors = np.asarray(item_factors, dtype=np.float32)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.n_items = self.item_factors.shape[0]
        self.user_items = user_items
        self.params = params or {}
        self._gram: np.ndarray | None = None

    def _system(self, row: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A, b with A x_u = b for one user's interaction row, and the confidences."""
        if self._gram is None:
            y = self.item_factors.astype(np.float64)
            self._gram = y.T @ y + self.regularization * np.eye(y.shape[1])
        mask = row.data > 0
        idx, confidence = row.indices[mask], self.alpha * row.data[mask].astype(np.float64)
        y = self.item_factors[idx].astype(np.float64)
        a = self._gram + (y * (confidence - 1.0)[:, None]).T @ y
        return a, y.T @ confidence, confidence

    def user_factors_for(self, rows: sp.csr_matrix) -> np.ndarray:
        """Exact least-squares user factors for interaction rows (as implicit's recalculate_user)."""
        rows = _csr(rows, self.n_items)
        out = np.zeros((rows.shape[0], self.item_factors.shape[1]), dtype=np.float32)
        for u in range(rows.shape[0]):
            if rows.indptr[u + 1] > rows.indptr[u]:
                a, b, _ = self._system(rows[u])
                out[u] = scipy.linalg.solve(a, b, assume_a="pos")
        return out

    def _score(self, rows, ids, part, **options):
        factors = self.user_factors[ids] if ids is not None else self.user_factors_for(rows)
        scores = factors @ self.item_factors.T
        scores[np.diff(rows.indptr) == 0] = -np.inf
        return scores

    def similar_items(self, item, k=10):
        norms = np.linalg.norm(self.item_factors, axis=1) + 1e-12
        scores = (self.item_factors @ self.item_factors[item]) / (norms * norms[item])
        scores[item] = -np.inf
        return _first_row(top_k(scores[None, :].astype(np.float32), k))

    def _explain_one(self, row, user, item, **options):
        # x_u = A^-1 sum_j c_uj y_j, so score(u, i) = sum_j c_uj y_i^T A^-1 y_j exactly.
        if row.nnz == 0:
            return dict(TRENDING_REASON)
        a, _, confidence = self._system(row)
        mask = row.data > 0
        weighted = scipy.linalg.solve(a, self.item_factors[item].astype(np.float64), assume_a="pos")
        contributions = np.full(row.nnz, -np.inf)
        contributions[mask] = confidence * (self.item_factors[row.indices[mask]] @ weighted)
        return _because(row, contributions) or dict(TRENDING_REASON)

    def _arrays(self):
        meta = {"regularization": self.regularization, "alpha": self.alpha, "params": self.params}
        return meta, {"user_factors": self.user_factors, "item_factors": self.item_factors}

    @classmethod
    def _restore(cls, meta, arrays):
        return cls(
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
            regularization=meta["regularization"],
            alpha=meta["alpha"],
            params=meta["params"],
        )


def als_fit(
    *,
    user_items: Any,
    factors: int = 64,
    regularization: float = 0.05,
    iterations: int = 15,
    alpha: float = 10.0,
    random_state: int = 0,
    num_threads: int = 0,
) -> ALSModel:
    """Fit ``implicit.cpu.als.AlternatingLeastSquares`` on a user x item csr matrix
    (implicit >= 0.7 takes users as rows). BLAS is limited to one thread meanwhile, as
    implicit parallelises over users itself (``num_threads``, 0 = all cores)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    x = _csr(user_items)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=random_state,
            num_threads=num_threads,
        )
        model.fit(x, show_progress=False)
    params = {"factors": factors, "regularization": regularization, "iterations": iterations, "alpha": alpha}
    return ALSModel(
        user_factors=model.user_factors,
        item_factors=model.item_factors,
        regularization=regularization,
        alpha=alpha,
        user_items=x,
        params={**params, "random_state": random_state},
    )


# --- Content-based ---------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]{2,}|\d{3,}")


def _tokens(tags: Sequence[str], text: str, text_weight: float) -> dict[str, float]:
    counts: dict[str, float] = {}
    for tag in tags:
        counts[f"tag:{tag.strip().lower()}"] = 1.0
    for word in _WORD.findall(text.lower()):
        counts[f"w:{word}"] = counts.get(f"w:{word}", 0.0) + text_weight
    return counts


@_register
class ContentModel(Recommender):
    """Content-based: items are L2-normalised TF-IDF (or BM25) vectors over their tags
    (``tag:<name>``) and text words (``w:<word>``); a user's profile is the normalised
    strength-weighted sum of their consumed items' vectors, plus ``declared_weight`` per
    declared liked tag and minus it per disliked tag."""

    kind = "content"

    def __init__(self, *, item_vectors, vocabulary: Sequence[str], user_items=None, params=None):
        self.item_vectors = sp.csr_matrix(item_vectors, dtype=np.float32)
        self.vocabulary = [str(t) for t in vocabulary]
        self._term = {t: i for i, t in enumerate(self.vocabulary)}
        self._is_tag = np.array([t.startswith("tag:") for t in self.vocabulary], dtype=bool)
        self.n_items = self.item_vectors.shape[0]
        self.user_items = user_items
        self.params = params or {}

    def recommend(
        self,
        users: Users,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        chunk_size: int | None = None,
        liked_tags: Sequence[Sequence[str]] | None = None,
        disliked_tags: Sequence[Sequence[str]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``liked_tags``/``disliked_tags`` hold declared preferences, one list per user row;
        a cold-start user is an empty interaction row with declared tags."""
        return self._recommend(
            users,
            k,
            exclude_seen=exclude_seen,
            chunk_size=chunk_size,
            liked_tags=liked_tags,
            disliked_tags=disliked_tags,
        )

    def profiles(
        self,
        rows: sp.csr_matrix,
        *,
        liked_tags: Sequence[Sequence[str]] | None = None,
        disliked_tags: Sequence[Sequence[str]] | None = None,
    ) -> np.ndarray:
        profile = np.asarray((rows @ self.item_vectors).todense(), dtype=np.float32)
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile /= np.where(norms > 0, norms, 1.0)
        weight = float(self.params.get("declared_weight", 0.5))
        for sign, declared in ((1.0, liked_tags), (-1.0, disliked_tags)):
            for u, tags in enumerate(declared or ()):
                for tag in tags:
                    term = self._term.get(f"tag:{tag.strip().lower()}")
                    if term is not None:
                        profile[u, term] += sign * weight
        return profile

    def _score(self, rows, ids, part, liked_tags=None, disliked_tags=None, **options):
        profile = self.profiles(
            rows,
            liked_tags=None if liked_tags is None else liked_tags[part],
            disliked_tags=None if disliked_tags is None else disliked_tags[part],
        )
        scores = np.asarray(self.item_vectors @ profile.T).T.copy()
        scores[scores <= 0] = -np.inf  # no overlap, or more disliked than liked: not a match
        return scores

    def similar_items(self, item, k=10):
        scores = (self.item_vectors @ self.item_vectors[item].T).toarray().ravel()
        scores[item] = 0.0
        return _first_row(top_k(_no_evidence(scores[None, :].astype(np.float32)), k))

    def explain(self, user, items, liked_tags=None, disliked_tags=None, **options):
        # The profile vector is the same for every item: compute it once.
        rows, _ids = self._resolve(user if sp.issparse(user) else [int(user)])
        profile = self.profiles(
            rows[:1],
            liked_tags=None if liked_tags is None else [liked_tags],
            disliked_tags=None if disliked_tags is None else [disliked_tags],
        )[0]
        return [self._explain_with(rows[0], profile, int(item)) for item in items]

    def _explain_one(self, row, user, item, liked_tags=None, disliked_tags=None, **options):
        profile = self.profiles(
            row,
            liked_tags=None if liked_tags is None else [liked_tags],
            disliked_tags=None if disliked_tags is None else [disliked_tags],
        )[0]
        return self._explain_with(row, profile, item)

    def _explain_with(self, row, profile, item):
        vector = self.item_vectors[item]
        contributions = profile[vector.indices] * vector.data
        tags = [
            (c, self.vocabulary[t][4:])
            for c, t in zip(contributions, vector.indices, strict=True)
            if c > 0 and self._is_tag[t]
        ]
        if tags:
            tags.sort(key=lambda pair: (-pair[0], pair[1]))
            return {"type": "matches_your_taste", "tags": [name for _, name in tags[:3]]}
        if row.nnz:
            sims = (self.item_vectors[row.indices] @ vector.T).toarray().ravel()
            return _because(row, row.data * sims) or dict(TRENDING_REASON)
        return dict(TRENDING_REASON)

    def _arrays(self):
        meta = {"vocabulary": self.vocabulary, "params": self.params}
        return meta, _sparse_arrays("item_vectors", self.item_vectors)

    @classmethod
    def _restore(cls, meta, arrays):
        return cls(
            item_vectors=_sparse_from("item_vectors", arrays),
            vocabulary=meta["vocabulary"],
            params=meta["params"],
        )


def content_fit(
    *,
    item_tags: Sequence[Sequence[str]],
    item_texts: Sequence[str] | None = None,
    user_items: Any = None,
    weighting: str = "bm25",
    text_weight: float = 0.5,
    declared_weight: float = 0.5,
    bm25_k1: float = 1.2,
    bm25_b: float = 0.75,
) -> ContentModel:
    """Item vectors from tags and text. ``tfidf``: tf * (ln((1 + n) / (1 + df)) + 1) (as
    scikit-learn's smooth idf); ``bm25``: tf (k1 + 1) / (tf + k1 (1 - b + b len / avglen))
    times ln(1 + (n - df + 0.5) / (df + 0.5)). Rows are L2-normalised. Items need no
    interactions, so new items are recommendable at once."""
    if weighting not in ("tfidf", "bm25"):
        raise ValueError("weighting must be 'tfidf' or 'bm25'")
    n_items = len(item_tags)
    texts = item_texts if item_texts is not None else [""] * n_items
    if len(texts) != n_items:
        raise ValueError("item_texts and item_tags must have one entry per item")
    vocabulary: dict[str, int] = {}
    indptr, indices, data = [0], [], []
    for tags, text in zip(item_tags, texts, strict=True):
        for token, count in _tokens(tags, text or "", text_weight).items():
            indices.append(vocabulary.setdefault(token, len(vocabulary)))
            data.append(count)
        indptr.append(len(indices))
    tf = sp.csr_matrix((data, indices, indptr), shape=(n_items, len(vocabulary)), dtype=np.float64)
    df = np.bincount(tf.indices, minlength=len(vocabulary)).astype(np.float64)
    if weighting == "tfidf":
        idf = np.log((1 + n_items) / (1 + df)) + 1.0
        weighted = tf.multiply(idf[None, :]).tocsr()
    else:
        idf = np.log(1.0 + (n_items - df + 0.5) / (df + 0.5))
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        norm = bm25_k1 * (1 - bm25_b + bm25_b * lengths / max(lengths.mean(), 1e-12))
        weighted = tf.copy()
        row_norm = np.repeat(norm, np.diff(tf.indptr))
        weighted.data = tf.data * (bm25_k1 + 1) / (tf.data + row_norm) * idf[tf.indices]
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    weighted = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weighted
    terms = sorted(vocabulary, key=vocabulary.get)  # type: ignore[arg-type]
    params = {"weighting": weighting, "text_weight": text_weight, "declared_weight": declared_weight}
    return ContentModel(
        item_vectors=weighted.tocsr(),
        vocabulary=terms,
        user_items=None if user_items is None else _csr(user_items, n_items),
        params=params,
    )


# --- Hybrid and fallback ---------------------------------------------------------------


def _normalise(scores: np.ndarray, how: str) -> np.ndarray:
    """Per-row min-max to [0, 1] or rank score 1 - rank / n_scored; unscored items get 0."""
    finite = np.isfinite(scores)
    out = np.zeros_like(scores, dtype=np.float32)
    if how == "minmax":
        low = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
        high = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
        span = np.where(high > low, high - low, 1.0)
        out[finite] = ((scores - low) / span)[finite]
        out[finite & (high == low)] = 1.0
    elif how == "rank":
        order = np.argsort(-np.where(finite, scores, -np.inf), axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
        n_scored = finite.sum(axis=1, keepdims=True)
        out[finite] = (1.0 - ranks / np.maximum(n_scored, 1))[finite]
    else:
        raise ValueError("normalisation must be 'minmax' or 'rank'")
    return out


@_register
class HybridModel(Recommender):
    """A weighted blend of models' scores, each normalised per user over the items it can
    score and the user has not consumed. All models must share the item (and user) indices."""

    kind = "hybrid"

    @property
    def compress_default(self) -> bool:  # type: ignore[override]
        return all(m.compress_default for m in self.models)

    def __init__(self, *, models: Sequence[Recommender], weights: Sequence[float], normalisation="minmax"):
        if len(models) != len(weights) or not models:
            raise ValueError("give one weight per model")
        if len({m.n_items for m in models}) != 1:
            raise ValueError("all models must have the same number of items")
        self.models = list(models)
        self.weights = [float(w) for w in weights]
        self.normalisation = normalisation
        self.n_items = models[0].n_items
        self.user_items = next((m.user_items for m in models if m.user_items is not None), None)

    def _parts(self, rows, ids, part, **options) -> list[np.ndarray]:
        out = []
        for model in self.models:
            scores = model._score(rows, ids, part, **options)
            _mask_seen(scores, rows)
            out.append(_normalise(scores, self.normalisation))
        return out

    def _score(self, rows, ids, part, **options):
        parts = self._parts(rows, ids, part, **options)
        blended = sum(w * p for w, p in zip(self.weights, parts, strict=True))
        return _no_evidence(np.asarray(blended, dtype=np.float32))

    def similar_items(self, item, k=10):
        for model in self.models:
            try:
                return model.similar_items(item, k)
            except NotImplementedError:
                continue
        return super().similar_items(item, k)

    def _explain_one(self, row, user, item, **options):
        ids = None if user is None else np.array([user])
        parts = self._parts(row, ids, slice(0, 1), **options)
        best = int(np.argmax([w * p[0, item] for w, p in zip(self.weights, parts, strict=True)]))
        return self.models[best]._explain_one(row, user, item, **options)

    def explain(self, user, items, **options):
        # Score the user once, then let the component that contributed most explain each item.
        rows, ids = self._resolve(user if sp.issparse(user) else [int(user)])
        parts = self._parts(rows[:1], None if ids is None else ids[:1], slice(0, 1), **options)
        items = [int(i) for i in items]
        groups: dict[int, list[int]] = {}
        for position, item in enumerate(items):
            best = int(np.argmax([w * p[0, item] for w, p in zip(self.weights, parts, strict=True)]))
            groups.setdefault(best, []).append(position)
        out: list[Reason] = [dict(TRENDING_REASON)] * len(items)
        for best, positions in groups.items():
            # Components are stored without the interaction matrix: give them the row itself.
            reasons = self.models[best].explain(rows[:1], [items[p] for p in positions], **options)
            for position, reason in zip(positions, reasons, strict=True):
                out[position] = reason
        return out

    def _arrays(self):
        meta = {"weights": self.weights, "normalisation": self.normalisation, "count": len(self.models)}
        arrays = {
            f"model_{i}": np.frombuffer(m.to_bytes(with_interactions=False, compress=False), dtype=np.uint8)
            for i, m in enumerate(self.models)
        }
        return meta, arrays

    @classmethod
    def _restore(cls, meta, arrays):
        models = [model_from_bytes(arrays[f"model_{i}"].tobytes()) for i in range(meta["count"])]
        return cls(models=models, weights=meta["weights"], normalisation=meta["normalisation"])


@_register
class FallbackModel(Recommender):
    """A fallback chain: the first model's list, with empty slots filled from the next
    model (skipping items already listed), and so on. Scores of slots filled by different
    models are not comparable; ``sources`` from ``recommend_with_sources`` tells them apart."""

    kind = "fallback"

    @property
    def compress_default(self) -> bool:  # type: ignore[override]
        return all(m.compress_default for m in self.models)

    def __init__(self, *, models: Sequence[Recommender]):
        if not models or len({m.n_items for m in models}) != 1:
            raise ValueError("give at least one model; all must have the same number of items")
        self.models = list(models)
        self.n_items = models[0].n_items
        self.user_items = next((m.user_items for m in models if m.user_items is not None), None)

    def recommend(self, users, k=10, *, exclude_seen=True, chunk_size=None):
        items, scores, _ = self.recommend_with_sources(
            users, k, exclude_seen=exclude_seen, chunk_size=chunk_size
        )
        return items, scores

    def recommend_with_sources(
        self, users: Users, k: int = 10, *, exclude_seen: bool = True, chunk_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``recommend``, plus the index of the model that supplied each slot (-1: none)."""
        if not sp.issparse(users):
            users = self._resolve(users)[0]  # sub-models may lack the training interactions
        rows = _csr(users, self.n_items)
        n = rows.shape[0]
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        sources = np.full((n, k), -1, dtype=np.int64)
        for stage, model in enumerate(self.models):
            missing = np.flatnonzero((items < 0).any(axis=1))
            if missing.size == 0:
                break
            # Ask for k more so that duplicates of already listed items can be skipped.
            got, got_scores = model.recommend(
                rows[missing], 2 * k, exclude_seen=exclude_seen, chunk_size=chunk_size
            )
            for row, user in enumerate(missing.tolist()):
                listed = set(items[user][items[user] >= 0].tolist())
                slot = len(listed)
                for item, score in zip(got[row].tolist(), got_scores[row].tolist(), strict=True):
                    if slot == k or item < 0:
                        break
                    if item in listed:
                        continue
                    items[user, slot], scores[user, slot], sources[user, slot] = item, score, stage
                    listed.add(item)
                    slot += 1
        return items, scores, sources

    def _score(self, rows, ids, part, **options):
        # Not a blend: the chain's order wins; used only when nested in a hybrid.
        return self.models[0]._score(rows, ids, part, **options)

    def similar_items(self, item, k=10):
        return HybridModel.similar_items(self, item, k)  # type: ignore[arg-type]

    def _explain_one(self, row, user, item, **options):
        for model in self.models:
            score = model._score(row, None, slice(0, 1))[0, item]
            if np.isfinite(score):
                return model._explain_one(row, user, item, **options)
        return dict(TRENDING_REASON)

    def _arrays(self):
        arrays = {
            f"model_{i}": np.frombuffer(m.to_bytes(with_interactions=False, compress=False), dtype=np.uint8)
            for i, m in enumerate(self.models)
        }
        return {"count": len(self.models)}, arrays

    @classmethod
    def _restore(cls, meta, arrays):
        return cls(models=[model_from_bytes(arrays[f"model_{i}"].tobytes()) for i in range(meta["count"])])


# --- Re-ranking ------------------------------------------------------------------------


def _minmax(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min() if values.size else 0.0
    return (values - values.min()) / span if span > 0 else np.ones_like(values)


def mmr_rerank(
    *,
    candidates: np.ndarray,
    scores: np.ndarray,
    item_vectors: sp.spmatrix | np.ndarray,
    k: int,
    lambda_: float = 0.7,
) -> np.ndarray:
    """Maximal marginal relevance (Carbonell & Goldstein): greedily pick
    argmax lambda * rel(i) - (1 - lambda) * max_{j picked} cos(i, j), with rel the candidates'
    scores min-max normalised. lambda = 1 keeps the original order."""
    candidates = np.asarray(candidates, dtype=np.int64)
    valid = candidates >= 0
    candidates, relevance = candidates[valid], _minmax(np.asarray(scores)[valid])
    vectors = item_vectors[candidates]
    vectors = vectors.toarray() if sp.issparse(vectors) else np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    vectors = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    similarity = vectors @ vectors.T
    picked: list[int] = []
    max_sim = np.zeros(len(candidates))
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        gain = lambda_ * relevance - (1 - lambda_) * max_sim
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, similarity[best])
    return candidates[picked]


def tag_distribution(
    *, item_tags: sp.spmatrix, items: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Steck's p(g|u): the weighted mean over ``items`` of each item's tag distribution
    p(g|i) (uniform over its tags). Items without tags are ignored."""
    tags = sp.csr_matrix(item_tags, dtype=np.float64)
    per_item = sp.diags(1.0 / np.maximum(np.diff(tags.indptr), 1)) @ tags
    items = np.asarray(items, dtype=np.int64)
    w = np.ones(len(items)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w * (np.diff(tags.indptr)[items] > 0)
    total = w.sum()
    if total == 0:
        return np.zeros(tags.shape[1])
    return np.asarray(per_item[items].T @ w).ravel() / total


def kl_divergence(p: np.ndarray, q: np.ndarray, *, alpha: float = 0.01) -> float:
    """KL(p || q~) with q~ = (1 - alpha) q + alpha p, Steck's smoothing (finite when q = 0)."""
    smoothed = (1 - alpha) * q + alpha * p
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / smoothed[mask])))


def calibrate_rerank(
    *,
    candidates: np.ndarray,
    scores: np.ndarray,
    item_tags: sp.spmatrix,
    history: np.ndarray,
    k: int,
    lambda_: float = 0.5,
    alpha: float = 0.01,
) -> np.ndarray:
    """Steck's calibrated recommendations (RecSys 2018): greedily build the list S that
    maximises (1 - lambda) * sum_{i in S} rel(i) - lambda * KL(history || q(S)), with rel the
    min-max normalised scores and ``history`` the user's tag distribution p(g|u)."""
    candidates = np.asarray(candidates, dtype=np.int64)
    valid = candidates >= 0
    candidates, relevance = candidates[valid], _minmax(np.asarray(scores)[valid])
    tags = sp.csr_matrix(item_tags, dtype=np.float64)[candidates]
    per_item = (sp.diags(1.0 / np.maximum(np.diff(tags.indptr), 1)) @ tags).toarray()
    has_tags = (np.diff(tags.indptr) > 0).astype(np.float64)
    picked: list[int] = []
    mass = np.zeros(tags.shape[1])
    count = 0.0
    total_relevance = 0.0
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        best, best_value = -1, -np.inf
        for c in np.flatnonzero(available):
            new_count = count + has_tags[c]
            q = (mass + per_item[c]) / new_count if new_count else np.zeros_like(mass)
            value = (1 - lambda_) * (total_relevance + relevance[c]) - lambda_ * kl_divergence(
                history, q, alpha=alpha
            )
            if value > best_value:
                best, best_value = c, value
        picked.append(best)
        available[best] = False
        mass += per_item[best]
        count += has_tags[best]
        total_relevance += relevance[best]
    return candidates[picked]


Fit = Callable[..., Recommender]
FITTERS: dict[str, Fit] = {
    "popularity": popularity_fit,
    "item_knn": item_knn_fit,
    "ease": ease_fit,
    "als": als_fit,
    "content": content_fit,
}
