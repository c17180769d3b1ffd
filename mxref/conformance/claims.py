"""What a backend claims to implement: formats, scale rules, roundings and overflow modes.

An implementation that only does round-to-nearest-even with the spec's
FLOOR scale is not wrong about stochastic rounding; it simply does not offer
it.  A :class:`Claims` says what it offers.  ``mxref conform`` and the pytest
battery then test exactly that and report the rest as "not claimed", so such
a backend can pass.

Claims are written as ``key=value,value;key=value`` on the command line
(``--claims`` of ``mxref conform``, ``--mx-claims`` of the pytest battery),
or as a ``[claims]`` table in the deviations file::

    [claims]
    formats = ["mxfp4", "mxfp8_e4m3"]
    scale_rules = ["floor"]
    roundings = ["rne"]
    overflows = ["saturate"]

A key left out claims everything of its kind, except NVFP4: an MX
implementation is not expected to do NVFP4, so ``formats`` must name
``nvfp4`` for its checks to run (``formats = ["nvfp4"]`` claims NVFP4 only;
its element roundings are the ``roundings`` claimed, its scale rules and
overflow modes do not apply).

Spec: OCP MX v1.0 section 6.3 requires roundTiesToEven and defines the FLOOR
scale and saturation; the other policies are optional.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxref.conformance.deviations import CLAIMS_KEY, read_deviations_file
from mxref.formats import FORMATS, get_format, mx_format_names
from mxref.io import InputError, PathLike
from mxref.policies import Overflow, Rounding, ScaleRule

__all__ = ["CLAIM_KINDS", "Claims", "load_claims"]

#: Formats a backend may claim: the MX formats and the two-level ones (NVFP4).
CLAIMABLE_FORMATS = tuple(mx_format_names()) + tuple(n for n, f in FORMATS.items() if f.two_level)

#: Claim key -> (the values it may take, its singular for messages).
CLAIM_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "formats": (CLAIMABLE_FORMATS, "format"),
    "scale_rules": (tuple(r.value for r in ScaleRule), "scale rule"),
    "roundings": (tuple(r.value for r in Rounding), "rounding"),
    "overflows": (tuple(o.value for o in Overflow), "overflow"),
}


@dataclass(frozen=True)
class Claims:
    """The formats and policies a backend implements (each a frozenset of mxref names).

    The default claims every MX format and policy; NVFP4 is claimed by name
    (:meth:`everything` is what mxref itself implements, NVFP4 included).
    """

    formats: frozenset[str] = frozenset(mx_format_names())
    scale_rules: frozenset[str] = frozenset(CLAIM_KINDS["scale_rules"][0])
    roundings: frozenset[str] = frozenset(CLAIM_KINDS["roundings"][0])
    overflows: frozenset[str] = frozenset(CLAIM_KINDS["overflows"][0])

    @classmethod
    def everything(cls) -> Claims:
        """Every format (NVFP4 included) and every policy: what mxref itself implements."""
        return cls(formats=frozenset(CLAIMABLE_FORMATS))

    @classmethod
    def from_mapping(cls, data: object, source: str = "claims") -> Claims:
        """Claims from ``{"roundings": ["rne"], ...}``; unknown keys and values are errors."""
        if not isinstance(data, dict):
            raise InputError(f"{source} must be a table of claim lists; got {type(data).__name__}")
        unknown = sorted(set(data) - set(CLAIM_KINDS))
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"expected {', '.join(CLAIM_KINDS)}")  # fmt: skip
        chosen: dict[str, frozenset[str]] = {}
        for key, raw in data.items():
            allowed, singular = CLAIM_KINDS[key]
            values = [raw] if isinstance(raw, str) else raw
            if not isinstance(values, list | tuple) or not values:
                raise InputError(f"{source}: {key} must be a non-empty list of names")
            names = []
            for value in values:
                name = _canonical(key, value)
                if name not in allowed:
                    raise InputError(f"{source}: {value!r} is not a {singular} "
                                     f"({', '.join(allowed)})")  # fmt: skip
                names.append(name)
            chosen[key] = frozenset(names)
        return cls(**chosen)

    @classmethod
    def parse(cls, text: str, source: str = "--claims") -> Claims:
        """Claims from ``"roundings=rne;scale_rules=floor,ceil"`` (singular keys work too)."""
        data: dict[str, list[str]] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, sep, values = part.partition("=")
            key = _plural(key.strip().lower().replace("-", "_"))
            if not sep or not values.strip():
                raise InputError(f"{source}: {part!r} must look like key=value[,value...]")
            data[key] = [v.strip() for v in values.split(",") if v.strip()]
        if not data:
            raise InputError(f"{source} is empty; e.g. 'roundings=rne;scale_rules=floor'")
        return cls.from_mapping(data, source)

    def covers(self, fmt: str | None = None, scale_rule: str | None = None,
               rounding: str | None = None, overflow: str | None = None) -> bool:  # fmt: skip
        """Whether every one of the given names is claimed (None: not asked)."""
        asked = (("formats", fmt), ("scale_rules", scale_rule), ("roundings", rounding),
                 ("overflows", overflow))  # fmt: skip
        return all(value is None or _canonical(key, value) in getattr(self, key)
                   for key, value in asked)  # fmt: skip

    def not_claimed(self) -> list[str]:
        """What is left out, one line per kind, for reports (empty when every MX format and
        policy is claimed; NVFP4, claimed by name only, is never listed as left out)."""
        lines = []
        for key, (allowed, singular) in CLAIM_KINDS.items():
            missing = [v for v in allowed if v not in getattr(self, key)
                       and (v in mx_format_names() or key != "formats")]  # fmt: skip
            if missing:
                lines.append(f"{singular}: {', '.join(missing)}")
        return lines

    def to_json(self) -> dict[str, list[str]]:
        """The claims as JSON-ready lists, in the kinds' own order."""
        return {key: [v for v in allowed if v in getattr(self, key)]
                for key, (allowed, _) in CLAIM_KINDS.items()}  # fmt: skip


def load_claims(path: PathLike) -> Claims | None:
    """The ``[claims]`` table of a deviations file (JSON, or TOML), or None when it has none."""
    data = read_deviations_file(path)
    if not isinstance(data, dict) or CLAIMS_KEY not in data:
        return None
    return Claims.from_mapping(data[CLAIMS_KEY], f"{path}: {CLAIMS_KEY}")


def _plural(key: str) -> str:
    singular = {s.replace(" ", "_"): k for k, (_, s) in CLAIM_KINDS.items()}
    return singular.get(key, key)


def _canonical(key: str, value: object) -> str:
    if not isinstance(value, str):
        return repr(value)
    if key == "formats":
        try:
            # aliases (float4_e2m1fn) name the same format
            return get_format(value, two_level=True).name
        except ValueError:
            return value
    return value.strip().lower().replace("-", "_")
