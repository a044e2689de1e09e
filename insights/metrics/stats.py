"""Measurements and their 95% intervals (DOMAIN §5, Confidence and status)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

Z = 1.96


@dataclass(frozen=True)
class Measurement:
    value: float | None
    n: int | None  # None: the metric has no sample (counts and totals)
    ci_low: float | None = None
    ci_high: float | None = None


def wilson(successes: int, n: int) -> Measurement:
    if n == 0:
        return Measurement(None, 0)
    p = successes / n
    denominator = 1 + Z**2 / n
    centre = (p + Z**2 / (2 * n)) / denominator
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / denominator
    return Measurement(p, n, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(n: int, mean: float | None, sd: float | None) -> Measurement:
    if n == 0 or mean is None:
        return Measurement(None, n)
    if n < 2 or sd is None:
        return Measurement(float(mean), n)
    half = Z * float(sd) / math.sqrt(n)
    return Measurement(float(mean), n, float(mean) - half, float(mean) + half)


def nps_interval(promoters: int, detractors: int, n: int) -> Measurement:
    if n == 0:
        return Measurement(None, 0)
    p, d = promoters / n, detractors / n
    score = 100 * (p - d)
    half = Z * 100 * math.sqrt(max(p + d - (p - d) ** 2, 0.0) / n)
    return Measurement(score, n, score - half, score + half)


@dataclass
class Moments:
    """Count, exact sum and the sum of squared deviations from the mean of a set of values:
    what a mean and its sample deviation need, combined across parts without losing precision
    (Chan, Golub & LeVeque's pairwise update; the sums stay exact)."""

    n: int = 0
    total: Fraction = Fraction(0)
    squares: float = 0.0  # Σ (v − mean)²
    # Σ v², where the database sums exactly (PostgreSQL's numeric): the deviation is then exact.
    exact_squares: Fraction | None = Fraction(0)

    def add(
        self, n: int, total: Fraction, squares: float, exact_squares: Fraction | None = None
    ) -> None:
        if n == 0:
            return
        if self.exact_squares is not None and exact_squares is not None:
            self.exact_squares += exact_squares
        else:
            self.exact_squares = None
        if self.n == 0:
            self.n, self.total, self.squares = n, total, squares
            return
        delta = float(total / n - self.total / self.n)
        combined = self.n + n
        self.squares += squares + delta * delta * self.n * n / combined
        self.n, self.total = combined, self.total + total

    def measurement(self) -> Measurement:
        if self.n == 0:
            return mean_interval(0, None, None)
        mean = self.total / self.n
        squares = self.squares
        if self.exact_squares is not None:
            squares = float(self.exact_squares - self.total * self.total / self.n)
        sd = math.sqrt(max(squares, 0.0) / (self.n - 1)) if self.n > 1 else None
        return mean_interval(self.n, float(mean), sd)
