"""Settings of the studies (``dtm study NAME``), one module per study, torch-free so that a bad key is refused
before the study imports torch."""

from __future__ import annotations

from dtm.config.loader import check


def check_seeds(seeds: list[int], workers: int) -> None:
    """The checks every study's ``seeds`` and ``workers`` share: at least one seed, none twice, one worker or more."""
    check(bool(seeds), "seeds", "must list at least one seed")
    check(len(set(seeds)) == len(seeds), "seeds", f"has duplicates: {seeds}")
    check(workers >= 1, "workers", f"must be >= 1, got {workers}")
