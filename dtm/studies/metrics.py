"""Metrics for studies: path-level diversity, entropy and total variation, and the spread over seeds (pure
functions)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping


def empirical(samples: Iterable[str]) -> dict[str, float]:
    """The empirical distribution of hashable samples."""
    counts = Counter(samples)
    total = sum(counts.values())
    return {key: count / total for key, count in counts.items()}


def entropy(dist: Mapping[str, float]) -> float:
    """Shannon entropy in nats."""
    return -sum(p * math.log(p) for p in dist.values() if p > 0)


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """TV(p, q) = 1/2 sum_x |p(x) - q(x)| over the union of supports."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def tilt(dist: Mapping[str, float], rewards: Mapping[str, float], a: float) -> dict[str, float]:
    """rho_a(x) ∝ dist(x) exp(a r(x)), computed with max-shifted exponents."""
    top = max(a * rewards[k] for k in dist)
    weights = {k: p * math.exp(a * rewards[k] - top) for k, p in dist.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


def mean_std(values: Iterable[float]) -> dict[str, float]:
    """Mean and sample standard deviation over seeds (std 0 for a single value)."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
