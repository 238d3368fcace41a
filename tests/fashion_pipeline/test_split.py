import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fashion_pipeline.split import choose_test_groups, stratified_keep


def groups_from(images_per_group, labels_per_group):
    keys = [f"pair:{i}" for i in range(len(images_per_group))]
    return keys, list(images_per_group), list(labels_per_group)


def test_fraction_is_close_and_whole_groups_move():
    rng = random.Random(1)
    sizes = [rng.randint(1, 4) for _ in range(2000)]
    labels = [1 << rng.randrange(11) for _ in sizes]
    keys, images, masks = groups_from(sizes, labels)
    flags = choose_test_groups(keys, images, masks, test_fraction=0.2, seed=0)
    test_images = sum(n for n, f in zip(images, flags) if f)
    assert abs(test_images / sum(images) - 0.2) < 0.01


def test_independent_of_input_order():
    rng = random.Random(2)
    keys = [f"pair:{i}" for i in range(500)]
    images = [rng.randint(1, 3) for _ in keys]
    masks = [1 << rng.randrange(5) for _ in keys]
    flags = choose_test_groups(keys, images, masks, test_fraction=0.2, seed=3)
    chosen = {k for k, f in zip(keys, flags) if f}
    order = list(range(500))
    rng.shuffle(order)
    shuffled = choose_test_groups([keys[i] for i in order], [images[i] for i in order], [masks[i] for i in order], test_fraction=0.2, seed=3)
    assert {keys[i] for i, f in zip(order, shuffled) if f} == chosen


def test_seed_changes_the_split():
    keys = [f"pair:{i}" for i in range(200)]
    a = choose_test_groups(keys, [1] * 200, [1] * 200, test_fraction=0.2, seed=1)
    b = choose_test_groups(keys, [1] * 200, [1] * 200, test_fraction=0.2, seed=2)
    assert a != b


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, (1 << 6) - 1)), min_size=1, max_size=60),
    st.floats(0.0, 0.9),
    st.integers(0, 5),
)
def test_every_test_label_is_in_train(groups, fraction, seed):
    keys = [f"g{i}" for i in range(len(groups))]
    images = [n for n, _ in groups]
    masks = [m for _, m in groups]
    flags = choose_test_groups(keys, images, masks, test_fraction=fraction, seed=seed)
    train_labels = test_labels = 0
    for mask, flag in zip(masks, flags):
        if flag:
            test_labels |= mask
        else:
            train_labels |= mask
    assert test_labels & ~train_labels == 0
    if fraction == 0:
        assert not any(flags)


def test_zero_fraction_puts_everything_in_train():
    assert not any(choose_test_groups(["a", "b"], [1, 1], [1, 1], test_fraction=0.0, seed=0))


def test_stratified_keep_is_proportional_and_keeps_rare_strata():
    strata = [0] * 900 + [1] * 99 + [2]
    keys = list(range(1000))
    kept = stratified_keep(strata, keys, range(1000), 100)
    assert len(kept) == 100
    per = [sum(1 for i in kept if strata[i] == s) for s in range(3)]
    assert per[2] == 1  # the single rare image survives
    assert 88 <= per[0] <= 90 and 9 <= per[1] <= 11


def test_stratified_keep_is_deterministic_by_key():
    strata = [0] * 10
    keys = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert stratified_keep(strata, keys, range(10), 3) == {7, 8, 9}
