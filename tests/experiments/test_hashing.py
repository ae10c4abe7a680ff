"""Bucketing reproduces GrowthBook's SDKs.

Known answers are GrowthBook's own SDK test cases: growthbook/growthbook,
packages/sdk-js/test/cases.json (spec 0.5.x), sections "hash" ([seed, value, version,
expected]), "getBucketRange" and "run"/"feature" (experiment buckets).
"""

from __future__ import annotations

import pytest

from experiments.hashing import bucket_hash, bucket_ranges, choose_variation, fnv1a32, in_namespace

GROWTHBOOK_HASH_CASES = [
    ("", "a", 1, 0.22),
    ("", "b", 1, 0.077),
    ("b", "a", 1, 0.946),
    ("ef", "d", 1, 0.652),
    ("asdf", "8952klfjas09ujk", 1, 0.549),
    ("", "123", 1, 0.011),
    ("", '___)((*":&', 1, 0.563),
    ("seed", "a", 2, 0.0505),
    ("seed", "b", 2, 0.2696),
    ("foo", "ab", 2, 0.2575),
    ("foo", "def", 2, 0.2019),
    ("89123klj", "8952klfjas09ujkasdf", 2, 0.124),
    ("90850943850283058242805", "123", 2, 0.7516),
    ("()**(%$##$%#$#", '___)((*":&', 2, 0.0128),
    ("abc", "def", 99, None),
]

GROWTHBOOK_BUCKET_RANGE_CASES = [
    ((2, 1, None), [(0, 0.5), (0.5, 1)]),
    ((2, 0.5, None), [(0, 0.25), (0.5, 0.75)]),
    ((2, 0, None), [(0, 0), (0.5, 0.5)]),
    ((4, 1, None), [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]),
    ((2, 1, [0.4, 0.6]), [(0, 0.4), (0.4, 1)]),
    ((3, 1, [0.2, 0.3, 0.5]), [(0, 0.2), (0.2, 0.5), (0.5, 1)]),
    ((3, 0.2, [0.2, 0.3, 0.5]), [(0, 0.04), (0.2, 0.26), (0.5, 0.6)]),
    ((2, -0.2, None), [(0, 0), (0.5, 0.5)]),
    ((2, 1.5, None), [(0, 0.5), (0.5, 1)]),
    ((2, 1, [0.4, 0.1]), [(0, 0.5), (0.5, 1)]),
    ((2, 1, [0.7, 0.6]), [(0, 0.5), (0.5, 1)]),
    ((4, 1, [0.4, 0.4, 0.2]), [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]),
    ((2, 1, [0.4, 0.5999]), [(0, 0.4), (0.4, 0.9999)]),
]


def test_fnv1a32_matches_the_published_reference_values():
    # Landon Curt Noll's FNV test vectors.
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968


@pytest.mark.parametrize("seed, value, version, expected", GROWTHBOOK_HASH_CASES)
def test_bucket_hash_reproduces_growthbook_cases(seed, value, version, expected):
    assert bucket_hash(seed, value, version) == expected


@pytest.mark.parametrize("args, expected", GROWTHBOOK_BUCKET_RANGE_CASES)
def test_bucket_ranges_reproduce_growthbook_cases(args, expected):
    got = [bound for pair in bucket_ranges(*args) for bound in pair]
    assert got == pytest.approx([bound for pair in expected for bound in pair])


@pytest.mark.parametrize(
    "user, expected",
    # cases.json "run": key "my-test", default weights, legacy hash (seed = key, version 1).
    [("1", 1), ("2", 0), ("3", 0), ("4", 1), ("5", 1), ("6", 1), ("7", 0), ("8", 1), ("9", 0)],
)
def test_choose_variation_reproduces_growthbook_run_cases(user, expected):
    n = bucket_hash("my-test", user, 1)
    assert choose_variation(n, bucket_ranges(2)) == expected


def test_users_outside_the_coverage_are_not_in_the_experiment():
    # cases.json "run", "coverage - 1": id "1" with coverage 0.4 is not in the experiment.
    assert choose_variation(bucket_hash("my-test", "1", 1), bucket_ranges(2, 0.4)) == -1
    assert choose_variation(bucket_hash("my-test", "2", 1), bucket_ranges(2, 0.4)) == 0


def test_lowering_coverage_never_moves_a_user_to_another_variation():
    full, partial = bucket_ranges(3, 1.0, [0.2, 0.3, 0.5]), bucket_ranges(3, 0.3, [0.2, 0.3, 0.5])
    for i in range(2000):
        n = bucket_hash("exp", f"user-{i}")
        low = choose_variation(n, partial)
        assert low in (-1, choose_variation(n, full))


def test_v2_buckets_are_uniform_enough_for_a_fair_split():
    counts = [0, 0]
    for i in range(20000):
        counts[choose_variation(bucket_hash("seed", str(i)), bucket_ranges(2))] += 1
    assert abs(counts[0] / 20000 - 0.5) < 0.015


def test_namespaces_with_disjoint_ranges_never_share_a_user():
    for i in range(1000):
        user = f"u{i}"
        assert not (in_namespace(user, "home", 0, 0.5) and in_namespace(user, "home", 0.5, 1))
