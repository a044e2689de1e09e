"""Maximum likelihood over positive parameters, shared by the two models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

# Parameters are searched in log space within e^±LOG_BOUND (about 1e-9 to 1e9): wide enough
# for any real data, and no overflow where data cannot identify a parameter (every customer
# bought once: a and b are then free, r heads to zero).
LOG_BOUND = 21.0


def maximise(
    objective: Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]],
    start: NDArray[np.float64],
    scale: float = 1.0,
) -> tuple[NDArray[np.float64], float]:
    """The log-parameters that maximise `objective` (log-likelihood and its gradient with
    respect to them), and the maximum.

    L-BFGS-B on the likelihood divided by `scale` (the number of customers): the
    tolerances then mean the same for 100 customers as for 100,000."""

    def negative(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        value, grad = objective(theta)
        return -value / scale, -grad / scale

    result = minimize(
        negative,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(-LOG_BOUND, LOG_BOUND)] * len(start),
        options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000},
    )
    return result.x, -float(result.fun) * scale
