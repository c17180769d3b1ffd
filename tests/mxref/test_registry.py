"""The one name-to-object registry behind formats, presets, profiles, configs and methods."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import mxref
from mxref.accum import PROFILES
from mxref.formats import FORMATS, get_format
from mxref.presets import PRESETS
from mxref.registry import Registry


@dataclass(frozen=True)
class Thing:
    name: str


def test_lookup_is_case_insensitive_and_passes_items_through():
    r = Registry("thing", Thing, (Thing("Alpha"), Thing("beta")))
    assert r.resolve(" alpha ") is r["ALPHA"] is r.resolve(r["alpha"])
    assert list(r) == ["Alpha", "beta"]
    assert len(r) == 2
    assert "BETA" in r
    assert "gamma" not in r
    assert 3 not in r
    assert r.get("gamma") is None  # a Mapping's get stays a Mapping's get
    with pytest.raises(KeyError):
        r["gamma"]


def test_unknown_names_and_wrong_types_are_clear_errors():
    r = Registry("thing", Thing, (Thing("a"), Thing("b")))
    with pytest.raises(ValueError, match=r"^thing must be one of 'a', 'b'; got 'c'$"):
        r.resolve("c")
    custom = Registry("thing", Thing, (Thing("a"),), unknown="no {kind} {name} (have {known})")
    with pytest.raises(ValueError, match=r"^no thing 'c' \(have 'a'\)$"):
        custom.resolve("c")
    with pytest.raises(TypeError, match="thing must be a name or a Thing; got int"):
        r.resolve(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="thing must be a Thing; got str"):
        r.register("d")  # type: ignore[arg-type]


def test_registering_never_silently_replaces():
    r = Registry("thing", Thing, (Thing("a"),))
    with pytest.raises(ValueError, match="'A' is already registered as 'a'; pass replace=True"):
        r.register(Thing("A"))
    r.register(Thing("b"), aliases=("bee",))
    with pytest.raises(ValueError, match="'bee' is already taken by 'b'"):
        r.register(Thing("c"), aliases=("bee",))
    assert "c" not in r  # nothing half-registered
    new_a = Thing("a")
    assert r.register(new_a, replace=True) is r["a"] is new_a
    assert r.aliases("b") == ("bee",)
    assert r.resolve("BEE").name == "b"


@pytest.mark.parametrize(
    ("alias", "name"),
    [("float4_e2m1fn", "mxfp4"), ("float6_e2m3fn", "mxfp6_e2m3"), ("float6_e3m2fn", "mxfp6_e3m2"),
     ("float8_e4m3fn", "mxfp8_e4m3"), ("float8_e5m2", "mxfp8_e5m2"), ("E4M3", "mxfp8_e4m3")],
)  # fmt: skip
def test_other_libraries_names_are_aliases_of_the_element_formats(alias, name):
    assert get_format(alias) is FORMATS[name]
    assert alias.lower() in FORMATS.aliases(name)
    codes = mxref.quantize([1.0, -3.0, 0.25], alias).codes
    assert codes.tobytes() == mxref.quantize([1.0, -3.0, 0.25], name).codes.tobytes()


def test_the_libraries_registries_list_canonical_names_only():
    assert list(FORMATS) == ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2",
                             "mxint8", "nvfp4"]  # fmt: skip
    assert mxref.mx_format_names() == list(FORMATS)[:-1]
    assert "ocp" in PRESETS
    assert list(PROFILES)[:2] == ["exact", "block_fp32"]
    assert all(PROFILES[name].name == name for name in PROFILES)


def test_the_accumulation_forms_list_each_profile_once():
    with pytest.raises(ValueError, match="is not one of") as info:
        mxref.parse_accum("nonsense")
    message = str(info.value)
    for name in PROFILES:
        assert message.count(name) == 1, name


def test_the_kernel_codes_are_an_explicit_table_covering_every_member():
    from mxref.kernels import element, scale
    from mxref.policies import ROUNDING_CODES, SCALE_RULE_CODES, Rounding, ScaleRule

    assert set(ROUNDING_CODES) == set(Rounding)
    assert set(SCALE_RULE_CODES) == set(ScaleRule)
    assert len(set(ROUNDING_CODES.values())) == len(Rounding)  # distinct codes
    assert len(set(SCALE_RULE_CODES.values())) == len(ScaleRule)
    kernel_roundings = (element.RNE, element.AWAY, element.ZERO, element.STOCHASTIC)
    members = (Rounding.RNE, Rounding.AWAY, Rounding.ZERO, Rounding.STOCHASTIC)
    assert kernel_roundings == tuple(ROUNDING_CODES[r] for r in members)
    kernel_rules = (scale.FLOOR, scale.RCEIL_FP32_DIV)
    assert kernel_rules == (SCALE_RULE_CODES[ScaleRule.FLOOR],
                            SCALE_RULE_CODES[ScaleRule.RCEIL_FP32_DIV])  # fmt: skip
    assert not hasattr(Rounding.RNE, "code")  # no positional code to drift from the table
