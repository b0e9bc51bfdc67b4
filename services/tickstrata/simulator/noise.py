"""Deterministic randomness addressed by coordinates: the same (seed, symbol, second) always draws the same numbers.

Addressable noise is what lets the simulator answer a REST question about any past minute without replaying
everything before it: a minute's trade count, its price path and its trades are functions of the seed and the
minute alone.
"""

from __future__ import annotations

import math
from typing import Final

_MASK64: Final = (1 << 64) - 1
_TWO64: Final = float(1 << 64)


def _mix(x: int) -> int:
    """splitmix64's finaliser: a fast bijective scramble of 64-bit integers."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def hash64(*parts: int) -> int:
    """A 64-bit hash of integer coordinates (negative coordinates allowed)."""
    h = 0x243F6A8885A308D3
    for part in parts:
        h = _mix(h ^ (part & _MASK64))
    return h


def uniform(*parts: int) -> float:
    """A uniform float in [0, 1) addressed by `parts`."""
    return hash64(*parts) / _TWO64


def poisson(mean: float, *parts: int) -> int:
    """A Poisson-distributed count with `mean`, addressed by `parts` (normal approximation for large means)."""
    if mean <= 0:
        return 0
    if mean > 20:
        u1 = max(uniform(*parts, 1), 1e-12)
        u2 = uniform(*parts, 2)
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
        return max(0, round(mean + math.sqrt(mean) * z))
    # Inverse transform: walk the CDF until it passes u.
    u = uniform(*parts, 0)
    k = 0
    pmf = math.exp(-mean)
    cdf = pmf
    while u > cdf and k < 10_000:
        k += 1
        pmf *= mean / k
        cdf += pmf
    return k


# Octaves of value noise for the price path: periods 4 s .. 2**17 s (~1.5 days). Amplitudes grow with the square
# root of the period like a random walk's displacement, but the sum is bounded, so prices never drift to zero.
_OCTAVES: Final = tuple(range(2, 18))
_COARSE_SECS: Final = 4


def log_price_offsets(seed: int, symbol_key: int, start_sec: int, count: int, sigma_per_sqrt_sec: float) -> list[float]:
    """Log-price offsets from the instrument's base price at seconds start_sec .. start_sec+count (inclusive).

    Computed per octave over the whole range at once: each lattice value is hashed once and interpolated,
    which keeps a REST request for a thousand past minutes affordable.
    """
    if count % _COARSE_SECS == 0 and start_sec % _COARSE_SECS == 0:
        # The finest octave has a 4 s period: evaluate every 4th second and interpolate linearly between, which
        # keeps the path's shape and costs a quarter.
        coarse = _offsets(
            seed, symbol_key, start_sec, count // _COARSE_SECS, sigma=sigma_per_sqrt_sec, stride=_COARSE_SECS
        )
        result = []
        for i in range(count + 1):
            j, r = divmod(i, _COARSE_SECS)
            result.append(coarse[j] if r == 0 else coarse[j] + (coarse[j + 1] - coarse[j]) * r / _COARSE_SECS)
        return result
    return _offsets(seed, symbol_key, start_sec, count, sigma=sigma_per_sqrt_sec, stride=1)


def _offsets(seed: int, symbol_key: int, start_sec: int, count: int, *, sigma: float, stride: int) -> list[float]:
    result = [0.0] * (count + 1)
    for octave in _OCTAVES:
        period = 1 << octave
        amplitude = sigma * math.sqrt(period) * 0.8
        first_cell = start_sec >> octave
        last_cell = (start_sec + count * stride) >> octave
        lattice = [2.0 * uniform(seed, symbol_key, octave, cell) - 1.0 for cell in range(first_cell, last_cell + 2)]
        for i in range(count + 1):
            sec = start_sec + i * stride
            cell = sec >> octave
            frac = (sec - (cell << octave)) / period
            a = lattice[cell - first_cell]
            b = lattice[cell - first_cell + 1]
            # Smoothstep interpolation: no kinks at lattice points, so returns look continuous.
            t = frac * frac * (3.0 - 2.0 * frac)
            result[i] += amplitude * (a + (b - a) * t)
    return result


def stratified_cumulative(total: int, slots: int, phase: float, amplitude: float) -> list[int]:
    """Split `total` events over `slots` slots by a smooth monotone warp; returns cumulative counts (len slots+1).

    Deterministic and computable without drawing each slot, so the count of any second of any minute is known
    from the minute's total alone.
    """
    cumulative = [0] * (slots + 1)
    two_pi = 2.0 * math.pi
    base = math.sin(phase)
    for s in range(1, slots + 1):
        warped = (s + amplitude * slots / two_pi * (math.sin(two_pi * s / slots + phase) - base)) / slots
        cumulative[s] = min(total, max(cumulative[s - 1], math.floor(total * warped + 1e-9)))
    cumulative[slots] = total
    return cumulative
