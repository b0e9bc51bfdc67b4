"""Settings for every test: property tests judge results, never the machine's speed.

Hypothesis's deadline and its too-slow health check measure wall-clock time, which a loaded 2-core CI machine
stretches by 10x; they would fail correct code at random. Every other check stays on.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("tickstrata", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tickstrata")
