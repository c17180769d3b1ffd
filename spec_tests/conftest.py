"""Shared pytest configuration for the conformance battery.

Hypothesis profiles: ``ci`` (derandomized, the default under ``make test``)
and ``nightly`` (many examples; select with ``--hypothesis-profile=nightly``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

import mxref
from mxref.testing.backend import Quantize, load_backend

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=30,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mx-backend",
        default=None,
        help="run the battery against 'package.module:function' (mxref.quantize's signature)",
    )


@pytest.fixture(scope="session")
def mx_quantize(request: pytest.FixtureRequest) -> Quantize:
    """The quantize under test: mxref.quantize, or the --mx-backend callable."""
    spec = request.config.getoption("--mx-backend")
    return load_backend(spec) if spec else mxref.quantize
