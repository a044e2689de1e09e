"""Throttles for signing in and resetting a password.

Failed sign-ins are counted by django-axes (see config/settings.py). Password-reset requests are
counted here, in the Django cache (Redis, or files in the embedded mode).
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RESET_WINDOW_SECONDS = 3600


def claim_slot(scope: str, key: str, limit: int, window: int = RESET_WINDOW_SECONDS) -> bool:
    """Take one of `limit` slots for `key`, each held for `window` seconds; False when all are
    taken. At most `limit` claims succeed in any `window` seconds (a sliding window).

    Each slot is its own cache entry, taken with `cache.add`: atomic on Redis, and the entry
    keeps the timeout it was given on every backend. A counter would need `cache.incr`, which
    on the file-based cache rewrites the entry with the default 5-minute timeout."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return any(
        cache.add(f"throttle:{scope}:{digest}:{slot}", 1, timeout=window) for slot in range(limit)
    )


def allow_password_reset(email: str, ip_address: str) -> bool:
    """Whether a password-reset request may send mail: at most PASSWORD_RESET_LIMIT_PER_ADDRESS
    an hour to one address and PASSWORD_RESET_LIMIT_PER_IP an hour from one network address.
    Every request counts, whether the address has an account or not, so the answer reveals
    nothing. With the cache down the request is let through: a member locked out of their
    account is worse than a few more e-mails while Redis is back on its feet."""
    address = email.strip().lower()
    try:
        if not claim_slot("reset-ip", ip_address, settings.PASSWORD_RESET_LIMIT_PER_IP):
            return False
        return claim_slot("reset-address", address, settings.PASSWORD_RESET_LIMIT_PER_ADDRESS)
    except (RedisError, OSError) as error:
        log.warning("Password-reset limit not checked, the cache is down: %s", error)
        return True
