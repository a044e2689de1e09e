"""The Gamma-Gamma spend model (Fader & Hardie 2013, "The Gamma-Gamma model of monetary
value"), fitted by maximum likelihood on the customers with repeat purchases.

A customer's purchase values are gamma(p, ν) around their own mean p/ν; ν is gamma(q, γ)
across customers. The model sees each customer's x repeat values through their mean m.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import digamma, gammaln

from .optimize import maximise

Array = NDArray[np.float64]


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float
    log_likelihood: float

    @property
    def population_mean(self) -> float | None:
        """E[M] = p·γ/(q − 1), the expected spend per purchase of a customer we know nothing
        of; infinite (None) when q ≤ 1."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else None

    def expected_spend(self, x: ArrayLike, m: ArrayLike) -> Array:
        """E[M | x, m], each customer's expected spend per purchase: a weighted mean of the
        population mean and their own mean m of x values,
        (q−1)/(px+q−1) · pγ/(q−1) + px/(px+q−1) · m. A customer with x = 0 gets the
        population mean (their m is not read). NaN where undefined (q ≤ 1)."""
        x = np.asarray(x, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        p, q, gamma = self.p, self.q, self.gamma
        if q <= 1:
            return np.full(x.shape, np.nan)
        own = np.where(x > 0, m, 0.0)
        return (p * gamma + p * x * own) / (p * x + q - 1)

    def as_json(self) -> dict[str, float]:
        return {
            "p": self.p,
            "q": self.q,
            "gamma": self.gamma,
            "log_likelihood": self.log_likelihood,
        }


def log_likelihood(params: ArrayLike, x: ArrayLike, m: ArrayLike) -> tuple[Array, Array]:
    """Each customer's log-likelihood of their mean m of x values (x > 0, m > 0) at
    (p, q, γ), the density of m itself (with its Jacobian: Fader & Hardie 2013, eq. 3), and
    its gradient with respect to (log p, log q, log γ), one row per customer."""
    p, q, gamma = np.asarray(params, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    px = p * x
    log_gm = np.log(gamma + m * x)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_gm
    )
    d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - log_gm)
    d_q = digamma(px + q) - digamma(q) + np.log(gamma) - log_gm
    d_gamma = q / gamma - (px + q) / (gamma + m * x)
    return ll, np.stack([d_p * p, d_q * q, d_gamma * gamma], axis=1)


def fit(x: ArrayLike, m: ArrayLike) -> GammaGamma:
    """The maximum-likelihood Gamma-Gamma for customers with x > 0 repeat values of mean
    m > 0 (at least one)."""
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if not len(x) or np.any(x <= 0) or np.any(~(m > 0)):
        raise ValueError("the Gamma-Gamma model needs customers with x > 0 and m > 0")

    def objective(theta: Array) -> tuple[float, Array]:
        ll, grad = log_likelihood(np.exp(theta), x, m)
        return float(ll.sum()), grad.sum(axis=0)

    # p = 1, q = 2 put the population mean p·γ/(q−1) at γ: start it at the data's mean.
    theta, best = maximise(objective, np.log([1.0, 2.0, float(np.mean(m))]), scale=len(x))
    p, q, gamma = (float(v) for v in np.exp(theta))
    return GammaGamma(p=p, q=q, gamma=gamma, log_likelihood=best)
