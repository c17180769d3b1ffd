"""Shared pytest configuration for the conformance battery.

Hypothesis profiles:

``ci``
    Derandomized and fast (30 examples per test): the default, under
    ``make test`` and any plain ``pytest``.
``nightly``
    2000 randomized examples per test: ``pytest spec_tests
    --hypothesis-profile=nightly`` (``make conform-nightly``).

Hypothesis' own pytest plugin reads ``--hypothesis-profile``; ``ci`` is
loaded only when that option is not given, so the option always wins,
whichever of the plugin and this file is configured first.

``--mx-backend package.module:function`` runs the quantize tests against that
callable (see :func:`mx_quantize` and :func:`mx_encode`) instead of
:func:`mxref.quantize`; they still compare with the exact oracle
(:mod:`mxref.ref`) or spec constants, never with mxref's own kernels.

``--mx-claims 'roundings=rne;scale_rules=floor'`` says what that backend
implements (:mod:`mxref.conformance.claims`): calls for anything else are
skipped as "not claimed", and loops over policies keep to the claimed ones,
so a backend that offers less than mxref can pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import mxref
from mxref.conformance.claims import Claims
from mxref.presets import get_preset
from mxref.testing.backend import (
    BackendContractError,
    Quantize,
    backend_output,
    load_backend,
)

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=30,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile(
    "nightly",
    max_examples=2000,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--mx-backend",
        default=None,
        help="run the battery against 'package.module:function' (mxref.quantize's signature)",
    )
    parser.addoption(
        "--mx-claims",
        default=None,
        help="what the --mx-backend implements, e.g. 'roundings=rne;scale_rules=floor'; "
        "the rest is skipped as not claimed",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Load the ``ci`` profile unless ``--hypothesis-profile`` names one."""
    if not config.getoption("hypothesis_profile", default=None):
        settings.load_profile("ci")


@pytest.fixture(scope="session")
def mx_quantize(request: pytest.FixtureRequest) -> Quantize:
    """The quantize under test: mxref.quantize, or the --mx-backend callable."""
    spec = request.config.getoption("--mx-backend")
    return load_backend(spec) if spec else mxref.quantize


class Encoder:
    """Calls the quantize under test and returns its ``(codes, scales)`` as uint8 arrays.

    Attributes
    ----------
    quantize : callable
        :func:`mxref.quantize` or the ``--mx-backend`` callable.
    """

    def __init__(self, quantize: Quantize, claims: Claims | None = None) -> None:
        self.quantize = quantize
        self.claims = claims if claims is not None else Claims()

    def claimed(self, kind: str, names: Any) -> list[Any]:
        """Those of ``names`` (policy or format names) that the backend claims.

        ``kind`` is ``"formats"``, ``"scale_rules"``, ``"roundings"`` or ``"overflows"``.
        """
        return [n for n in names if n in getattr(self.claims, kind)]

    @property
    def is_mxref(self) -> bool:
        """True when no ``--mx-backend`` is selected (mxref's own kernels are under test)."""
        return self.quantize is mxref.quantize

    def __call__(self, x: Any, fmt: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        name = fmt if isinstance(fmt, str) else fmt.name
        preset = get_preset(kwargs.get("preset") or "ocp")
        asked = {
            "fmt": name,
            "scale_rule": str(kwargs.get("scale_rule") or preset.scale_rule),
            "rounding": str(kwargs.get("rounding") or preset.rounding),
            "overflow": str(kwargs.get("overflow") or preset.overflow),
        }
        if not self.claims.covers(**asked):
            pytest.skip(f"not claimed by the backend: {asked}")
        result = self.quantize(x, name, **kwargs)
        # the one backend contract every harness checks (docs/conformance.md)
        try:
            return backend_output(result, np.shape(x), kwargs.get("axis", -1),
                                  kwargs.get("block_size", 32), mxref.get_format(name).code_count)
        except BackendContractError as exc:
            pytest.fail(f"the backend broke the output contract: {exc}")


@pytest.fixture(scope="session")
def mx_encode(mx_quantize: Quantize, request: pytest.FixtureRequest) -> Encoder:
    """``encode(x, fmt, **policy) -> (codes, scales)`` (uint8) from the quantize under test."""
    text = request.config.getoption("--mx-claims")
    if text:
        return Encoder(mx_quantize, Claims.parse(text, "--mx-claims"))
    # mxref itself implements everything, NVFP4 included; a backend claims NVFP4 by name
    return Encoder(mx_quantize, Claims.everything() if mx_quantize is mxref.quantize else None)
