"""box_groups: which boxes lie together (files of one survey) and which are of other places."""

import numpy as np

from cim.kernels.clusters import box_groups


def grid_of_tiles(x0: float, y0: float, n: int, size: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    lo = np.stack([x0 + i.ravel() * size, y0 + j.ravel() * size], axis=1)
    return lo, lo + size


def test_a_survey_grid_is_one_place_and_a_far_one_another():
    lo_a, hi_a = grid_of_tiles(0.0, 0.0, 6)
    lo_b, hi_b = grid_of_tiles(300_000.0, -50_000.0, 3)
    lo, hi = np.concatenate([lo_b, lo_a]), np.concatenate([hi_b, hi_a])
    labels = box_groups(lo, hi, gap=20_000.0)
    assert labels.tolist() == [0] * 9 + [1] * 36  # numbered by first appearance


def test_gaps_chain_and_the_threshold_is_inclusive():
    lo = np.array([[0.0, 0.0], [1500.0, 0.0], [3000.0, 0.0], [10_000.0, 5000.0]])
    hi = lo + 1000.0
    assert box_groups(lo, hi, gap=500.0).tolist() == [0, 0, 0, 1]  # 0-1-2 chained by 500 m gaps
    assert box_groups(lo, hi, gap=499.0).tolist() == [0, 1, 2, 3]
    # near in x but far in y is not near
    assert box_groups(np.array([[0.0, 0.0], [0.0, 50_000.0]]), np.array([[10.0, 10.0], [10.0, 50_010.0]]), gap=1000.0).tolist() == [0, 1]


def test_matches_a_brute_force_reference():
    rng = np.random.default_rng(3)
    lo = rng.uniform(0, 100_000, (300, 2))
    hi = lo + rng.uniform(10, 3000, (300, 2))
    gap = 1500.0
    near = (lo[:, None, 0] <= hi[None, :, 0] + gap) & (hi[:, None, 0] >= lo[None, :, 0] - gap)
    near &= (lo[:, None, 1] <= hi[None, :, 1] + gap) & (hi[:, None, 1] >= lo[None, :, 1] - gap)
    labels = np.full(300, -1)
    for start in range(300):  # flood fill
        if labels[start] >= 0:
            continue
        labels[start] = labels.max() + 1
        todo = [start]
        while todo:
            k = todo.pop()
            for m in np.nonzero(near[k] & (labels < 0))[0]:
                labels[m] = labels[start]
                todo.append(m)
    assert box_groups(lo, hi, gap).tolist() == labels.tolist()
