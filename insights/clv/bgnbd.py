"""The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way"):
how often customers buy and how long they stay, fitted by maximum likelihood.

While alive, a customer buys at rate λ (gamma(r, alpha) across customers, alpha per week);
after each purchase they drop out with probability p (beta(a, b) across customers). A customer
is summarised by (x, t_x, T): repeat purchases, the time of the last one and the time observed,
both measured from their first purchase, in weeks.

Everything is computed in log space (sums of logs for the gamma-function ratios, logaddexp,
expit): with hundreds of purchases the terms of the likelihood under- or overflow long before
their ratios do. E[Y(t)] is the closed form with scipy's hyp2f1, or, where the fit's a is large
and that form underflows, a quadrature over the then narrow beta.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainccinv, betaincinv, expit, hyp2f1

from .optimize import maximise

Array = NDArray[np.float64]

# From this a on, E[Y(t)] is taken by quadrature over the (then concentrated) beta.
CONCENTRATED_A = 30.0
NODES = 96
TAIL = 1e-17
# exp(−700) is near the smallest double: a hypergeometric term behind a smaller factor is lost.
UNDERFLOW = 700.0
NEAR_ONE = 1e-6


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float

    def _dropout_log_odds(self, x: Array, t_x: Array, T: Array) -> Array:
        """log of a/(b+x−1) · ((alpha+T)/(alpha+t_x))^(r+x): the odds, given the history, that
        the customer dropped out right after their last purchase (−inf without a repeat)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        out = np.full(x.shape, -np.inf)
        rep = x > 0
        xr = x[rep]
        out[rep] = (
            np.log(a)
            - np.log(b + xr - 1)
            + (r + xr) * (np.log(alpha + T[rep]) - np.log(alpha + t_x[rep]))
        )
        return out

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
        """P(alive at T | x, t_x, T) (paper, eq. 11)."""
        x, t_x, T = _arrays(x, t_x, T)
        return expit(-self._dropout_log_odds(x, t_x, T))

    def expected_purchases(self, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Array:
        """E[Y(t) | x, t_x, T]: each customer's expected purchases in the t weeks after T
        (paper, eq. 10)."""
        x, t_x, T = _arrays(x, t_x, T)
        groups, index = _by_history(x, T)
        ahead = self._ahead(np.asarray([t], dtype=np.float64), groups[:, 0], groups[:, 1])[0]
        return ahead[index] * self.p_alive(x, t_x, T)

    def total_expected_purchases(
        self, ts: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
    ) -> Array:
        """Σ over the customers of E[Y(t) | x, t_x, T], for each t of `ts`."""
        x, t_x, T = _arrays(x, t_x, T)
        groups, index = _by_history(x, T)
        alive = np.bincount(index, weights=self.p_alive(x, t_x, T), minlength=len(groups))
        return self._ahead(np.asarray(ts, dtype=np.float64), groups[:, 0], groups[:, 1]) @ alive

    def _ahead(self, ts: Array, x: Array, T: Array) -> Array:
        """Expected purchases in the t weeks after T of a customer alive at T, for each t of
        `ts` (rows) and each (x, T) (columns): E[Y(t) | x, t_x, T] / P(alive), which does not
        depend on t_x. Given p, such a customer makes (1 − (1 + p·t/(alpha+T))^−(r+x))/p
        purchases (the gamma over λ integrated out); p is then beta(a, b+x)."""
        out = np.empty((len(ts), len(x)))
        for row, t in enumerate(np.maximum(ts, 0.0)):
            if self.a < CONCENTRATED_A:
                out[row] = self._ahead_hypergeometric(t, x, T)
                broken = ~np.isfinite(out[row])
            else:
                broken = np.ones(len(x), dtype=bool)
            if broken.any():
                out[row, broken] = self._ahead_concentrated(t, x[broken], T[broken])
        return out

    def _ahead_hypergeometric(self, t: float, x: Array, T: Array) -> Array:
        """The closed form (paper, eq. 10), its hypergeometric term through Euler's
        transformation,
          ((alpha+T)/(alpha+T+t))^(r+x) · 2F1(r+x, b+x; a+b+x−1; z)
          = (1−z)^(a−1) · 2F1(a+b−1−r, a−1; a+b+x−1; z),   z = t/(alpha+T+t),
        whose parameters stay small as x grows: no huge power times a huge series. Not finite
        where (1−z)^(a−1) underflows (a large, z near 1)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if abs(a - 1) < NEAR_ONE / 2:
            # 0/0 at a = 1 itself (where a fit leaves a when nobody came back): the mean of
            # both sides, smooth in a, is off by O(NEAR_ONE²).
            return (
                replace(self, a=1 + NEAR_ONE)._ahead_hypergeometric(t, x, T)
                + replace(self, a=1 - NEAR_ONE)._ahead_hypergeometric(t, x, T)
            ) / 2
        z = t / (alpha + T + t)
        c = a + b + x - 1
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            log_head = (a - 1) * np.log1p(-z)
            tail = np.where(
                log_head > -UNDERFLOW, np.exp(log_head) * hyp2f1(a + b - 1 - r, a - 1, c, z), np.nan
            )
        # (a+b+x−1)/(a−1) · (1 − tail): both factors change sign at a = 1, the product does not.
        return c / (a - 1) * (1 - tail)

    def _ahead_concentrated(self, t: float, x: Array, T: Array) -> Array:
        """The same by quadrature over p, for a large a: then beta(a, b+x) is concentrated
        (its sd at most a tenth of its mean for a ≥ 100, a fifth for a ≥ 30), and
        Gauss-Legendre over all of it but 1e−17 at either end agrees with 40-digit arithmetic
        to 1e−13, where the closed form's (1−z)^(a−1) underflows. Fits go to such an a when
        customers show no spread in their drop-out (a and b grow without bound)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        out = np.empty(len(x))
        nodes, weights = np.polynomial.legendre.leggauss(NODES)
        for value in np.unique(x):
            B = b + value
            # All of the beta but 1e−17 at either end, however skewed it is.
            low, high = betaincinv(a, B, TAIL), betainccinv(a, B, TAIL)
            p = low + (high - low) * (nodes + 1) / 2
            log_density = (a - 1) * np.log(p) + (B - 1) * np.log1p(-p)
            density = weights * np.exp(log_density - log_density.max())
            density /= density.sum()
            same = x == value
            w = t / (alpha + T[same])
            bought = -np.expm1(-(r + value) * np.log1p(np.outer(w, p))) / p
            out[same] = bought @ density
        return out

    def as_json(self) -> dict[str, float]:
        return {
            "r": self.r,
            "alpha": self.alpha,
            "a": self.a,
            "b": self.b,
            "log_likelihood": self.log_likelihood,
        }


def _arrays(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[Array, Array, Array]:
    return (
        np.asarray(x, dtype=np.float64),
        np.asarray(t_x, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )


def _by_history(x: Array, T: Array) -> tuple[Array, NDArray[np.intp]]:
    """The distinct (x, T) pairs, and each customer's: customers share them a lot (T takes
    one value per first-purchase day), and the hypergeometric function is the costly part."""
    groups, index = np.unique(np.stack([x, T], axis=1), axis=0, return_inverse=True)
    return groups, index.reshape(-1)


def _rising(base: float, x: NDArray[np.intp], top: int) -> tuple[Array, Array]:
    """log Γ(base+x) − log Γ(base) = Σ_{j<x} log(base+j), and its derivative in base,
    ψ(base+x) − ψ(base) = Σ_{j<x} 1/(base+j), for whole x. Summed, not differenced: with a
    and b in the millions (a fit whose customers show no spread in drop-out), differences of
    log Γ lose several digits."""
    steps = base + np.arange(top, dtype=np.float64)
    logs = np.concatenate([[0.0], np.cumsum(np.log(steps))])
    inverses = np.concatenate([[0.0], np.cumsum(1.0 / steps)])
    return logs[x], inverses[x]


def log_likelihood(
    params: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[Array, Array]:
    """Each customer's log-likelihood (paper, eq. 6) at (r, alpha, a, b), and its gradient with
    respect to (log r, log alpha, log a, log b), one row per customer. x is whole."""
    r, alpha, a, b = np.asarray(params, dtype=np.float64)
    x, t_x, T = _arrays(x, t_x, T)
    whole = x.astype(np.intp)
    top = int(whole.max(initial=0))
    log_r, inv_r = _rising(r, whole, top)
    log_b, inv_b = _rising(b, whole, top)
    log_ab, inv_ab = _rising(a + b, whole, top)
    rep = x > 0
    log_at = np.log(alpha + T)
    # Alive at T: the first term; dropped out right after the last purchase: the second.
    alive = -(r + x) * log_at
    dropped = np.full(x.shape, -np.inf)
    log_atx = np.log(alpha + t_x)
    dropped[rep] = np.log(a) - np.log(b + x[rep] - 1) - (r + x[rep]) * log_atx[rep]
    mixed = np.logaddexp(alive, dropped)
    ll = log_r + r * np.log(alpha) + log_b - log_ab + mixed
    w = np.exp(dropped - mixed)  # the second term's share of the mixture
    d_r = inv_r + np.log(alpha) - (1 - w) * log_at - w * log_atx
    d_alpha = r / alpha - (r + x) * ((1 - w) / (alpha + T) + w / (alpha + t_x))
    d_a = -inv_ab + w / a
    d_b = inv_b - inv_ab - np.divide(w, b + x - 1, out=np.zeros(x.shape), where=rep)
    grad = np.stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b], axis=1)
    return ll, grad


def fit(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> BgNbd:
    """The maximum-likelihood BG/NBD for these customers (at least one)."""
    x, t_x, T = _arrays(x, t_x, T)
    if not len(x):
        raise ValueError("no customers to fit")
    # Customers with the same history count once, weighted: real data repeats them a lot.
    rows, counts = np.unique(np.stack([x, t_x, T], axis=1), axis=0, return_counts=True)
    weights = counts.astype(np.float64)
    ux, utx, uT = rows[:, 0], rows[:, 1], rows[:, 2]

    def objective(theta: Array) -> tuple[float, Array]:
        ll, grad = log_likelihood(np.exp(theta), ux, utx, uT)
        return float(weights @ ll), weights @ grad

    # A start near the data: with r = 1, the mean rate r/alpha about the mean x over mean T.
    alpha0 = (float(np.mean(T)) + 1.0) / (float(np.mean(x)) + 1.0)
    theta, best = maximise(objective, np.log([1.0, alpha0, 1.0, 1.0]), scale=len(x))
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    return BgNbd(r=r, alpha=alpha, a=a, b=b, log_likelihood=best)
