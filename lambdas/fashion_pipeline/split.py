"""Deterministic, order-independent train/test split and down-sampling.

Every decision is taken from a keyed hash of a name (pair id, image), never from input order
or a random generator's state, so the same data gives the same split however it was listed.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from collections import Counter
from typing import Sequence


def stable_hash(seed: int, key: str) -> int:
    hasher = _keyed_blake2b(seed).copy()  # copying a keyed hasher is cheaper than keying a new one
    hasher.update(key.encode())
    return int.from_bytes(hasher.digest(), "big")


@functools.lru_cache(maxsize=8)
def _keyed_blake2b(seed: int) -> hashlib._Hash:
    return hashlib.blake2b(digest_size=8, key=str(seed).encode())


def choose_test_groups(
    group_keys: Sequence[str],
    group_images: Sequence[int],
    group_labels: Sequence[int],
    *,
    test_fraction: float,
    seed: int,
) -> bytearray:
    """Pick whole groups (pair ids) for the test set; returns a 0/1 flag per group.

    Groups are visited in the order of their keys' stable hashes (see ``take_test_groups``).
    """
    order = sorted(range(len(group_keys)), key=lambda g: (stable_hash(seed, group_keys[g]), group_keys[g]))
    return take_test_groups(order, group_images, group_labels, test_fraction=test_fraction)


def take_test_groups(
    order: Sequence[int],
    group_images: Sequence[int],
    group_labels: Sequence[int],
    *,
    test_fraction: float,
) -> bytearray:
    """Visit the groups in ``order`` and flag the ones that go to test; a 0/1 flag per group.

    Groups are taken while the test set is short of its share, except a group whose removal
    would leave some label with no training group: every label in test is then also in
    train. ``group_labels`` holds a bit mask of labels per group. ``order`` is by stable hash,
    so that the split does not depend on input order (the assembler keeps only the hashes).
    """
    is_test = bytearray(len(group_images))
    total = sum(group_images)
    target = total * test_fraction
    if target <= 0:
        return is_test
    train_groups_with: dict[int, int] = {}
    for mask, groups in Counter(group_labels).items():
        for bit in _bits(mask):
            train_groups_with[bit] = train_groups_with.get(bit, 0) + groups
    test_images = 0
    for g in order:
        if test_images >= target:
            break
        images = group_images[g]
        # Taking a group that overshoots the target is fine only if it lands closer to it.
        if test_images + images - target > target - test_images:
            continue
        bits = _bits(group_labels[g])
        if any(train_groups_with[bit] <= 1 for bit in bits):
            continue
        for bit in bits:
            train_groups_with[bit] -= 1
        is_test[g] = 1
        test_images += images
    return is_test


def stratified_keep(
    strata: Sequence[int],
    keys: Sequence[int],
    candidates: Sequence[int],
    cap: int,
) -> set[int]:
    """Choose at most ``cap`` of ``candidates`` (record indices), proportionally per stratum.

    Each stratum keeps its largest-remainder share of the cap (at least one record while
    the cap allows), and within a stratum the records with the smallest hash keys.
    """
    if len(candidates) <= cap:
        return set(candidates)
    by_stratum: dict[int, list[int]] = {}
    for index in candidates:
        by_stratum.setdefault(strata[index], []).append(index)
    total = len(candidates)
    shares = {s: len(members) * cap / total for s, members in by_stratum.items()}
    quota = {s: max(1, int(share)) for s, share in shares.items()}
    spare = cap - sum(quota.values())
    for s in sorted(shares, key=lambda s: (-(shares[s] - int(shares[s])), s)):
        if spare <= 0:
            break
        if quota[s] < len(by_stratum[s]):
            quota[s] += 1
            spare -= 1
    # Rounding every stratum up to one record can overshoot a tiny cap: trim the largest.
    while sum(quota.values()) > cap:
        largest = max(quota, key=lambda s: (quota[s], -s))
        quota[largest] -= 1
    kept: set[int] = set()
    for s, members in by_stratum.items():
        kept.update(heapq.nsmallest(min(quota[s], len(members)), members, key=lambda i: (keys[i], i)))
    return kept


@functools.lru_cache(maxsize=4096)  # a data set has a few hundred label combinations
def _bits(mask: int) -> tuple[int, ...]:
    bits = []
    while mask:
        low = mask & -mask
        bits.append(low.bit_length() - 1)
        mask ^= low
    return tuple(bits)
