"""Deterministic, order-independent train/test split and down-sampling.

Every decision is taken from a keyed hash of a name (pair id, image), never from input order
or a random generator's state, so the same data gives the same split however it was listed.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from collections import Counter
from typing import Iterable, Sequence


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

    ``group_labels`` holds a bit mask of labels per group. Groups are visited in the order of
    their keys' stable hashes (see ``GroupSplitter``, which ManifestAssembler uses directly).
    """
    order = sorted(range(len(group_keys)), key=lambda g: (stable_hash(seed, group_keys[g]), group_keys[g]))
    splitter = GroupSplitter(zip(group_images, group_labels), test_fraction=test_fraction)
    is_test = bytearray(len(group_images))
    for g in order:
        if splitter.done:
            break
        is_test[g] = splitter.take(group_images[g], group_labels[g])
    return is_test


class GroupSplitter:
    """Decides, group by group in the order of their stable hashes, which go to test.

    Groups are taken while the test set is short of its share, except a group whose removal
    would leave some label with no training group: every label in test is then also in
    train. The order is by stable hash, so the split does not depend on input order; the
    picker sees one group at a time, so the caller need not hold them all.
    """

    def __init__(self, groups: Iterable[tuple[int, int]], *, test_fraction: float) -> None:
        """``groups``: (images, label bit mask) of every group, in any order, read once."""
        images = 0
        masks: Counter[int] = Counter()  # a data set has a few hundred label combinations
        for group_images, mask in groups:
            images += group_images
            masks[mask] += 1
        self._train_groups_with: dict[int, int] = {}
        for mask, count in masks.items():
            for bit in _bits(mask):
                self._train_groups_with[bit] = self._train_groups_with.get(bit, 0) + count
        self._target = images * test_fraction
        self._test_images = 0

    @property
    def done(self) -> bool:
        return self._test_images >= self._target

    def take(self, images: int, mask: int) -> bool:
        """Whether the next group (in hash order) goes to test."""
        target, test_images = self._target, self._test_images
        if target <= 0 or test_images >= target:
            return False
        # Taking a group that overshoots the target is fine only if it lands closer to it.
        if test_images + images - target > target - test_images:
            return False
        bits = _bits(mask)
        if any(self._train_groups_with[bit] <= 1 for bit in bits):
            return False
        for bit in bits:
            self._train_groups_with[bit] -= 1
        self._test_images += images
        return True


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
