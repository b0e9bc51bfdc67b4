"""Fixtures: simulated venues on a virtual clock."""

from __future__ import annotations

import pytest

from tests.unit.simulator._support import make_engine
from tickstrata.simulator.engine import VenueEngine
from tickstrata.simulator.instruments import Venue


@pytest.fixture
def spot() -> VenueEngine:
    return make_engine(Venue.SPOT)


@pytest.fixture
def usdm() -> VenueEngine:
    return make_engine(Venue.USDM)
