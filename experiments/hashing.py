"""Deterministic bucketing that reproduces GrowthBook's published hashing.

Any GrowthBook SDK given the same seed, user id, weights and coverage computes the same bucket
and the same variation. See docs/experiments.md ("Assignment") for the definition.

- ``fnv1a32``: FNV-1a, 32 bits, over the string's UTF-16 code units (as JavaScript's
  ``charCodeAt`` sees them, the reference SDK's behaviour; identical to code points for
  every character in the Basic Multilingual Plane).
- ``bucket_hash`` version 2: ``fnv1a32(str(fnv1a32(seed + value))) % 10000 / 10000``;
  version 1 (legacy, biased): ``fnv1a32(value + seed) % 1000 / 1000``.
- ``bucket_ranges``: each variation gets ``[start, start + coverage * weight)`` where ``start``
  is the cumulative weight of the variations before it, so lowering coverage never moves a
  user from one variation to another.
"""

from __future__ import annotations

from collections.abc import Sequence

FNV_OFFSET_BASIS = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a32(text: str) -> int:
    h = FNV_OFFSET_BASIS
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h ^= data[i] | (data[i + 1] << 8)
        h = (h * FNV_PRIME) & 0xFFFFFFFF
    return h


def bucket_hash(seed: str, value: str, version: int = 2) -> float | None:
    """A number in [0, 1) for (seed, value); None for an unknown hash version (as the SDKs do)."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def equal_weights(count: int) -> list[float]:
    return [1.0 / count] * count if count > 0 else []


def bucket_ranges(
    count: int, coverage: float = 1.0, weights: Sequence[float] | None = None
) -> list[tuple[float, float]]:
    """The [start, end) range of each variation. Invalid weights fall back to equal weights."""
    coverage = min(max(coverage, 0.0), 1.0)
    chosen = list(weights) if weights is not None else equal_weights(count)
    if len(chosen) != count or not 0.99 <= sum(chosen) <= 1.01:
        chosen = equal_weights(count)
    ranges = []
    cumulative = 0.0
    for weight in chosen:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """The index of the range holding ``n``, or -1 when ``n`` falls outside them (not covered)."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def in_namespace(user: str, namespace: str, start: float, end: float) -> bool:
    """GrowthBook's namespace check: experiments in one namespace with disjoint ranges never share users."""
    n = bucket_hash("__" + namespace, user, 1)
    return n is not None and start <= n < end
