"""Load MovieLens ml-latest-small as implicit feedback for the recommender benchmarks.

Ratings become implicit feedback: a rating >= 3.5 is a positive interaction of strength 1,
lower ratings are dropped (a 2-star rating says "watched, disliked", which a top-N model
should not learn to recommend). Items are all movies of movies.csv; their tags for
diversity/calibration metrics are the genres, and their content text is the title plus the
free-text tags users gave.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
POSITIVE_RATING = 3.5


@dataclass(frozen=True)
class MovieLens:
    user_index: np.ndarray  # one entry per positive interaction
    item_index: np.ndarray
    timestamps: np.ndarray
    n_users: int
    n_items: int
    genres: list[list[str]]  # per item
    texts: list[str]  # per item: title and user tags
    genre_matrix: sp.csr_matrix  # items x genres, for diversity and calibration
    ratings: int  # all ratings read, before keeping positives

    def matrix(self, mask: np.ndarray) -> sp.csr_matrix:
        """User x item csr of the selected interactions (strength 1 each)."""
        return sp.csr_matrix(
            (np.ones(int(mask.sum()), dtype=np.float32), (self.user_index[mask], self.item_index[mask])),
            shape=(self.n_users, self.n_items),
        )


def load(path: Path = DATA) -> MovieLens:
    if not (path / "ratings.csv").exists():
        sys.exit(
            f"MovieLens ml-latest-small not found at {path}.\n"
            "Download https://files.grouplens.org/datasets/movielens/ml-latest-small.zip and unzip it "
            "there (the folder must contain ratings.csv, movies.csv and tags.csv)."
        )
    movies = pd.read_csv(path / "movies.csv")
    ratings = pd.read_csv(path / "ratings.csv")
    tags = pd.read_csv(path / "tags.csv")
    item_of = {movie: i for i, movie in enumerate(movies["movieId"].tolist())}
    positive = ratings[ratings["rating"] >= POSITIVE_RATING]
    user_index, _ = pd.factorize(positive["userId"], sort=True)
    genres = [
        [] if g == "(no genres listed)" else g.split("|") for g in movies["genres"].astype(str).tolist()
    ]
    user_tags = tags.groupby("movieId")["tag"].apply(lambda t: " ".join(map(str, t))).to_dict()
    texts = [
        f"{title} {user_tags.get(m, '')}" for m, title in zip(movies["movieId"], movies["title"], strict=True)
    ]
    names = sorted({g for gs in genres for g in gs})
    column = {g: j for j, g in enumerate(names)}
    rows = [i for i, gs in enumerate(genres) for _ in gs]
    cols = [column[g] for gs in genres for g in gs]
    genre_matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(movies), len(names)))
    return MovieLens(
        user_index=np.asarray(user_index, dtype=np.int64),
        item_index=positive["movieId"].map(item_of).to_numpy(dtype=np.int64),
        timestamps=positive["timestamp"].to_numpy(dtype=np.float64),
        n_users=int(user_index.max()) + 1,
        n_items=len(movies),
        genres=genres,
        texts=texts,
        genre_matrix=genre_matrix,
        ratings=len(ratings),
    )
