"""The raw-value store of open windows: filed per window, taken back in a canonical order."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.digest import DigestConfig
from pipeline.core.windows import OpenWindows

RES = 10_000


def store_with(windows: int, raw_limit: int = 0) -> tuple[OpenWindows, np.ndarray]:
    """An OpenWindows with one slot per window start 0, RES, 2·RES, … (series 0..windows-1)."""
    store = OpenWindows(DigestConfig(raw_limit=raw_limit))
    starts = np.arange(windows, dtype=np.int64) * RES
    codes = np.arange(windows, dtype=np.int64)
    slots = store.slots_for(
        codes,
        np.arange(windows, dtype=np.int32),
        starts,
        RES,
        np.zeros(windows, np.int64),
        np.zeros(windows, np.int64),
        np.ones(windows, bool),
    )
    return store, slots


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([0.0, -0.0, 1.5, -2.0, 7.0])),
        min_size=1,
        max_size=60,
    ),
    st.randoms(use_true_random=False),
    st.integers(1, 8),
)
def test_taken_values_do_not_depend_on_arrival_order_or_batching(
    pairs: list[tuple[int, float]], rnd: random.Random, batch: int
) -> None:
    """Equal values (0.0 and -0.0 included) come back in one order whatever order and batches
    they arrived in; values of windows still open stay held."""
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    taken = []
    for arrival in (pairs, shuffled):
        store, slots = store_with(4)
        for lo in range(0, len(arrival), batch):
            part = arrival[lo : lo + batch]
            store.add_values(
                slots[[w for w, _ in part]], np.array([v for _, v in part], np.float64)
            )
        closing = slots[[2, 0, 1]]
        values, starts, ends = store.take_closing(closing)
        assert store.raw_values_held() == sum(1 for w, _ in pairs if w == 3)
        groups = [values[a:b] for a, b in zip(starts, ends, strict=True)]
        for window, group in zip((2, 0, 1), groups, strict=True):
            expected = sorted(v for w, v in pairs if w == window)
            assert group.tolist() == expected  # ascending, as values
        taken.append(values.tobytes())
    assert taken[0] == taken[1]  # and bit for bit the same


def test_folding_takes_only_the_heavy_window_chunks() -> None:
    store, slots = store_with(3, raw_limit=4)
    store.add_values(slots[[0, 1, 2, 0, 0]], np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    store.add_values(slots[[0, 1]], np.array([6.0, 7.0]))  # window 0 reaches 4: one chunk folds
    assert store.raw[slots[0]] == 0
    assert store.folded_sum[slots[0]] == 1.0 + 4.0 + 5.0 + 6.0
    assert store.raw_values_held() == 3
    values, starts, ends = store.take_closing(slots)
    assert [values[a:b].tolist() for a, b in zip(starts, ends, strict=True)] == [
        [],
        [2.0, 7.0],
        [3.0],
    ]
    assert store.raw_values_held() == 0
