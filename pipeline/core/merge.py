"""Merging the digests of finer windows into one coarser window's percentiles and digest.

A serialized digest is a list of weighted points (centroids). Merging concatenates them:
- when every part is exact (each centroid a distinct raw value with its multiplicity), the union
  is the coarse window's exact value distribution, so its percentiles are exact too — the same
  linear interpolation as the base tier, at any size — and the digest stays exact while it has
  at most `compression` distinct values;
- otherwise the points are compressed into a fastdigest of `compression` centroids, which is how
  t-digests merge, and percentiles are estimated from it.
Either way the result depends only on the multiset of parts, not on their order (except for the
last bits of a compressed digest, which are fixed by sorting the points first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.core.digest import DigestConfig, build_weighted_digest, serialize_digest


def weighted_percentiles(
    values: np.ndarray, counts: np.ndarray, quantiles: tuple[float, ...]
) -> list[float]:
    """Percentiles of the sorted distinct `values` repeated `counts` times (numpy's "linear"
    definition, as the base tier computes them), without expanding the repetition."""
    cumulative = np.cumsum(counts)
    n = int(cumulative[-1])
    position = np.asarray(quantiles) * (n - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    lo = values[np.searchsorted(cumulative, below, side="right")]
    hi = values[np.searchsorted(cumulative, above, side="right")]
    return (lo + (hi - lo) * (position - below)).tolist()  # type: ignore[no-any-return]


def merge_digests(
    means: np.ndarray, weights: np.ndarray, all_exact: bool, config: DigestConfig
) -> tuple[list[float], dict[str, Any]]:
    """Percentiles (config order) and the serialized digest of the union of weighted points."""
    order = np.lexsort((weights, means))
    means, weights = means[order], weights[order]
    if all_exact:
        distinct, inverse = np.unique(means, return_inverse=True)
        counts = np.rint(np.bincount(inverse, weights=weights)).astype(np.int64)
        percentiles = weighted_percentiles(distinct, counts, config.quantiles)
        n = int(counts.sum())
        if len(distinct) <= config.compression:
            centroids = [
                {"m": m, "c": c} for m, c in zip(distinct.tolist(), counts.tolist(), strict=True)
            ]
            return percentiles, {
                "compression": config.compression,
                "n": n,
                "exact": True,
                "centroids": centroids,
            }
        digest = build_weighted_digest(distinct, counts.astype(np.float64), config.compression)
        return percentiles, serialize_digest(digest, config.compression)
    digest = build_weighted_digest(means, weights, config.compression)
    estimated = [float(x) for x in digest.quantile_vec(list(config.quantiles))]
    return estimated, serialize_digest(digest, config.compression)
