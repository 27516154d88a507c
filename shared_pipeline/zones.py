"""Taxi zones and their monthly congestion: the ground truth behind both the trips and the API.

The generator uses it to make durations; the enrichment API serves it. Deterministic per month.
"""

from __future__ import annotations

import numpy as np

# A fixed subset of the real NYC TLC LocationIDs keeps PU_DO combinations (and training) small.
ZONE_IDS: tuple[int, ...] = (
    7,
    41,
    42,
    43,
    65,
    74,
    75,
    82,
    95,
    97,
    116,
    129,
    130,
    134,
    152,
    166,
    181,
    244,
    255,
    260,
)


def _month_index(month: str) -> int:
    year, mon = (int(part) for part in month.split("-"))
    return year * 12 + (mon - 1)


def zone_congestion(month: str) -> dict[int, float]:
    """Congestion factor (>= 0.6) of every zone in `month` ("YYYY-MM"); drifts month over month."""
    base = np.random.default_rng(20240101).uniform(0.8, 1.4, size=len(ZONE_IDS))
    steps = _month_index(month) - _month_index("2024-01")
    walk = np.zeros(len(ZONE_IDS))
    for step in range(max(steps, 0)):
        # A random walk per zone: roadworks open and close, so last month's pattern goes stale.
        walk += np.random.default_rng(1000 + step).normal(0.0, 0.18, size=len(ZONE_IDS))
    values = np.clip(base + walk, 0.6, None)
    return {zone: round(float(value), 4) for zone, value in zip(ZONE_IDS, values, strict=True)}
