"""Retry timing (pure): exponential backoff with full jitter, for every retry loop of the hub.

Pollers, pushers and webhook workers all use it: full jitter spreads the retries of many hubs (or a thousand
subscribers) that lost the same peer or receiver at once.
"""

import random


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Uniform in [0, min(cap, base * 2**attempt)] (attempt from 1)."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 62))
    return rng.uniform(0.0, ceiling)
