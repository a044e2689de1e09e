"""Customer lifetime value (DOMAIN §9): BG/NBD for how often customers buy and how long they
stay, Gamma-Gamma for how much they spend, both fitted by maximum likelihood on per-customer
summaries computed in the database.

`customer_lifetime_value` is the whole report, as the JSON of `manage.py clv` prints it.

The models need numpy and scipy (a third of a second to import): they load with the first of
the names below that is used, not with the package, so a web process that reads the defaults
here and shows reports fitted by a worker never loads them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import bgnbd, gamma_gamma
    from .bgnbd import BgNbd
    from .gamma_gamma import GammaGamma
    from .report import customer_lifetime_value, fit_models
    from .summaries import Summaries, customer_summaries

DEFAULT_HORIZON_WEEKS = 52
DEFAULT_EVENT_TYPE = "purchase"

__all__ = [
    "DEFAULT_EVENT_TYPE",
    "DEFAULT_HORIZON_WEEKS",
    "BgNbd",
    "GammaGamma",
    "Summaries",
    "bgnbd",
    "customer_lifetime_value",
    "customer_summaries",
    "fit_models",
    "gamma_gamma",
]

# Each lazy name, and the module that holds it.
_LAZY = {
    "BgNbd": "bgnbd",
    "GammaGamma": "gamma_gamma",
    "Summaries": "summaries",
    "customer_summaries": "summaries",
    "customer_lifetime_value": "report",
    "fit_models": "report",
}
_MODULES = {"bgnbd", "gamma_gamma", "optimize", "report", "summaries"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
