"""Shared pytest fixtures and the Hypothesis profile of the test suite."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]

# Property tests run the same examples on every machine and every run
# (derandomize, no example database), few enough to stay quick, and without a
# per-example deadline: the first example may pay for Numba compilation.
settings.register_profile(
    "cart-abm",
    derandomize=True,
    database=None,
    max_examples=25,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("cart-abm")


@pytest.fixture
def root() -> Path:
    return ROOT
