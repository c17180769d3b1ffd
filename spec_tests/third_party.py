"""Known deviations of third-party MX casts from the spec, recorded as data.

Each :class:`KnownDeviation` names a library, the versions known to deviate
(a PEP 440 specifier set), the behaviour in words, and a small probe: the
library's output on a few inputs, what that output is on the deviating
versions, and what the spec (mxref) gives.  ``test_third_party_deviations``
asserts the deviation on the listed versions and agreement with mxref on
every other version, so a record keeps meaning something when the library
changes: a fix upstream turns into an agreement test, and a behaviour that is
neither the recorded one nor the spec's fails with a message that asks for the
record to be updated.

Versions were checked by running the probes (docs/development.md says how to
re-run them after ``make lock-upgrade``; docs/semantics.md section 8b lists
what holds with the locked versions).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import mxref


@dataclass(frozen=True)
class KnownDeviation:
    """One recorded behaviour of a third-party library that differs from the spec.

    Attributes
    ----------
    id : str
        Short stable name, used as the pytest id.
    library : str
        Distribution name, as ``importlib.metadata`` knows it.
    affected : str
        PEP 440 specifier of the versions known to deviate (local labels such
        as ``+cpu`` are ignored).
    checked : tuple of str
        Versions on which the probe was run by hand.
    behaviour : str
        What the library does, in words.
    observe : callable
        Runs the library on the probe inputs; returns a list of ints (bytes).
    deviant : tuple of int
        ``observe()`` on an affected version.
    spec : callable
        mxref's answer for the same inputs, as a list of ints.
    """

    id: str
    library: str
    affected: str
    checked: tuple[str, ...]
    behaviour: str
    observe: Callable[[], list[int]]
    deviant: tuple[int, ...]
    spec: Callable[[], list[int]]

    def installed_version(self) -> Version | None:
        """The installed version of :attr:`library` without its local label, or None."""
        try:
            raw = importlib.metadata.version(self.library)
        except importlib.metadata.PackageNotFoundError:
            return None
        return Version(Version(raw).public)

    def applies(self) -> bool:
        """Whether the installed version is one known to deviate."""
        version = self.installed_version()
        return version is not None and SpecifierSet(self.affected).contains(version)


def _ml_cast(values: list[float], dtype: str, source: type = np.float32) -> list[int]:
    ml_dtypes = importlib.import_module("ml_dtypes")
    return np.array(values, source).astype(getattr(ml_dtypes, dtype)).view(np.uint8).tolist()


def _torch_cast(values: list[float], dtype: str) -> list[int]:
    torch = importlib.import_module("torch")
    t = torch.tensor(values, dtype=torch.float32).to(getattr(torch, dtype))
    return [int(b) for b in t.view(torch.uint8).tolist()]


def _codes(values: list[float], fmt: str, source: type = np.float32, **policy: str) -> list[int]:
    """mxref's element codes with the scale pinned to 1 by a leading max-normal anchor."""
    anchor = float(mxref.get_format(fmt).max_normal)
    x = np.array([anchor, *values], source)
    return mxref.quantize(x, fmt, **policy).codes[1:].tolist()


def _floor_scale_bytes(values: list[float]) -> list[int]:
    """The spec's FLOOR scale byte of each |value| taken as an amax with emax_elem 0 (MXINT8)."""
    return [int(mxref.quantize(np.array([v], np.float32), "mxint8").scales[0]) for v in values]


def _torchao_e4m3(x: np.ndarray) -> list[int]:
    """torchao ``to_mx`` FLOOR on one block: [scale byte, element codes...]."""
    torch = importlib.import_module("torch")
    mx_tensor = importlib.import_module("torchao.prototype.mx_formats.mx_tensor")
    config = importlib.import_module("torchao.prototype.mx_formats.config")
    scale, data = mx_tensor.to_mx(
        torch.from_numpy(x), torch.float8_e4m3fn, 32, config.ScaleCalculationMode.FLOOR
    )
    return [int(scale.view(torch.uint8).item()), *data.view(torch.uint8).tolist()[:2]]


def _mxref_e4m3(x: np.ndarray) -> list[int]:
    mx = mxref.quantize(x, "mxfp8_e4m3")
    return [int(mx.scales[0]), *mx.codes[:2].tolist()]


def _tiny_block() -> np.ndarray:
    """One E4M3 block whose amax 1.75 * 2**-127 needs the scale byte 0x00."""
    x = np.zeros(32, np.float32)
    x[0] = np.float32(1.75 * 2.0**-127)
    return x


def _inf_block() -> np.ndarray:
    x = np.zeros(32, np.float32)
    x[0], x[1] = np.inf, 1.0
    return x


KNOWN_DEVIATIONS: tuple[KnownDeviation, ...] = (
    KnownDeviation(
        id="ml_dtypes-e4m3-cast-does-not-saturate",
        library="ml_dtypes",
        affected=">=0.2",
        checked=("0.6.0", "0.7.0"),
        behaviour="float8_e4m3fn casts overflow to NaN (480 -> 0x7F); MX saturates to 448",
        observe=lambda: _ml_cast([448.0, 480.0], "float8_e4m3fn"),
        deviant=(0x7E, 0x7F),
        spec=lambda: _codes([448.0, 480.0], "mxfp8_e4m3"),
    ),
    KnownDeviation(
        id="ml_dtypes-e5m2-cast-overflows-to-inf",
        library="ml_dtypes",
        affected=">=0.2",
        checked=("0.6.0", "0.7.0"),
        behaviour="float8_e5m2 casts overflow to Inf (61440 -> 0x7C); MX saturates to 57344",
        observe=lambda: _ml_cast([57344.0, 61440.0], "float8_e5m2"),
        deviant=(0x7B, 0x7C),
        spec=lambda: _codes([57344.0, 61440.0], "mxfp8_e5m2"),
    ),
    KnownDeviation(
        id="ml_dtypes-e8m0-cast-rounds-where-the-spec-floors",
        library="ml_dtypes",
        affected=">=0.5",
        checked=("0.6.0", "0.7.0"),
        behaviour="float8_e8m0fnu casts round to nearest, ties up (3 -> 4, 12 -> 16); "
        "the spec's scale rule takes the floor (3 -> 2, 12 -> 8)",
        observe=lambda: _ml_cast([3.0, 12.0], "float8_e8m0fnu"),
        deviant=(0x81, 0x83),
        spec=lambda: _floor_scale_bytes([3.0, 12.0]),
    ),
    KnownDeviation(
        id="ml_dtypes-float64-casts-round-twice",
        library="ml_dtypes",
        affected="<0.7",
        checked=("0.6.0", "0.7.0"),
        behaviour="casts from float64 round through float32 first, so 0.25 + 2**-40 becomes "
        "the tie 0.25 and rounds to 0 in E2M1, and 1 + 2**-4 + 2**-40 to 1 in E4M3",
        observe=lambda: [
            *_ml_cast([0.25 + 2.0**-40], "float4_e2m1fn", np.float64),
            *_ml_cast([1 + 2.0**-4 + 2.0**-40], "float8_e4m3fn", np.float64),
        ],
        deviant=(0x0, 0x38),
        spec=lambda: [
            *_codes([0.25 + 2.0**-40], "mxfp4", np.float64),
            *_codes([1 + 2.0**-4 + 2.0**-40], "mxfp8_e4m3", np.float64),
        ],
    ),
    KnownDeviation(
        id="torch-e4m3-cast-overflows-to-nan",
        library="torch",
        affected="<2.12",
        checked=("2.13.0",),
        behaviour="float8_e4m3fn casts overflowed to NaN before torch 2.12 (torchao's "
        "comment); 2.13 saturates as MX does",
        observe=lambda: _torch_cast([448.0, 480.0], "float8_e4m3fn"),
        deviant=(0x7E, 0x7F),
        spec=lambda: _codes([448.0, 480.0], "mxfp8_e4m3"),
    ),
    KnownDeviation(
        id="torch-e5m2-cast-overflows-to-inf",
        library="torch",
        affected=">=2.1",
        checked=("2.13.0",),
        behaviour="float8_e5m2 casts overflow to Inf (61440 -> 0x7C); MX saturates",
        observe=lambda: _torch_cast([57344.0, 61440.0], "float8_e5m2"),
        deviant=(0x7B, 0x7C),
        spec=lambda: _codes([57344.0, 61440.0], "mxfp8_e5m2"),
    ),
    KnownDeviation(
        id="torch-e8m0-cast-rounds-and-drops-the-sign",
        library="torch",
        affected=">=2.7",
        checked=("2.13.0",),
        behaviour="float8_e8m0fnu casts round ties up and ignore the sign (-3 -> 4); "
        "the spec's scale rule floors |amax| (-3 -> 2)",
        observe=lambda: _torch_cast([3.0, 12.0, -3.0], "float8_e8m0fnu"),
        deviant=(0x81, 0x83, 0x81),
        spec=lambda: _floor_scale_bytes([3.0, 12.0, 3.0]),
    ),
    KnownDeviation(
        id="torchao-divisor-clamped-at-2^-126",
        library="torchao",
        affected="==0.18.*",
        checked=("0.18.0",),
        behaviour="to_mx divides by max(scale, 2**-126), so a block with scale byte 0x00 "
        "stores its elements at half their value (1.75 * 2**-127 -> code of 0.875); "
        "mxref's preset='torchao' reproduces it",
        observe=lambda: _torchao_e4m3(_tiny_block()),
        deviant=(0x00, 0x36, 0x00),
        spec=lambda: _mxref_e4m3(_tiny_block()),
    ),
    KnownDeviation(
        id="torchao-floor-gives-inf-blocks-a-finite-scale",
        library="torchao",
        affected="==0.18.*",
        checked=("0.18.0",),
        behaviour="to_mx FLOOR gives a block holding Inf the finite scale byte 0xF7 and "
        "clamps its elements; the spec's NaN scale is 0xFF",
        observe=lambda: _torchao_e4m3(_inf_block())[:1],
        deviant=(0xF7,),
        spec=lambda: _mxref_e4m3(_inf_block())[:1],
    ),
)

#: Records by id.
BY_ID = {d.id: d for d in KNOWN_DEVIATIONS}
