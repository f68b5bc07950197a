"""Small statistics shared by evaluation and the perturbation experiment (a module below both, so
neither imports the other)."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval


def wilson_interval(passed: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927): unlike the normal
    approximation it stays inside [0, 1] and is not degenerate at 0/n or n/n, which is where a
    small model's pass rates live. (0, 1) when n is 0."""
    if n < 0 or not 0 <= passed <= n:
        raise ValueError(f"need 0 <= passed <= n, got passed={passed}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = passed / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if passed == 0 else max(0.0, centre - half)  # exact ends where rounding would miss them
    high = 1.0 if passed == n else min(1.0, centre + half)
    return low, high


def newcombe_difference(passed_a: int, n_a: int, passed_b: int, n_b: int) -> tuple[float, float, float]:
    """(a's rate - b's rate, and its 95% interval) by Newcombe's hybrid score method (Newcombe 1998,
    method 10), built from the two Wilson intervals; it treats the two samples as independent, which
    is conservative when both ran the same tasks."""
    a, b = passed_a / n_a, passed_b / n_b
    low_a, high_a = wilson_interval(passed_a, n_a)
    low_b, high_b = wilson_interval(passed_b, n_b)
    d = a - b
    return d, d - math.sqrt((a - low_a) ** 2 + (high_b - b) ** 2), d + math.sqrt((high_a - a) ** 2 + (b - low_b) ** 2)


__all__ = ["Z_95", "newcombe_difference", "wilson_interval"]
