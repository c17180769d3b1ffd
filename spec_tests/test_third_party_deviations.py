"""Third-party deviations from the spec, asserted per installed version.

On a version that :mod:`spec_tests.third_party` lists as affected, the library
must still show the recorded behaviour (and that behaviour must differ from
mxref's); on every other version it must agree with mxref.  A library that
does neither has changed in a way the record does not know: update the record.
"""

from __future__ import annotations

import importlib.util

import pytest

from spec_tests.third_party import KNOWN_DEVIATIONS, KnownDeviation


@pytest.mark.parametrize("deviation", KNOWN_DEVIATIONS, ids=lambda d: d.id)
def test_known_deviation_holds_on_its_versions_and_agreement_elsewhere(deviation: KnownDeviation):
    top = deviation.library.replace("-", "_")
    if importlib.util.find_spec(top) is None:
        pytest.skip(f"{deviation.library} is not installed")
    version = deviation.installed_version()
    got, spec = deviation.observe(), deviation.spec()
    assert list(deviation.deviant) != spec, f"{deviation.id}: the record's deviant equals the spec"
    if deviation.applies():
        assert got == list(deviation.deviant), (
            f"{deviation.library} {version} is listed as affected ({deviation.affected}) but "
            f"gave {got}, not the recorded {list(deviation.deviant)}; "
            f"mxref gives {spec}. Update spec_tests/third_party.py."
        )
    else:
        assert got == spec, (
            f"{deviation.library} {version} is outside the affected range "
            f"({deviation.affected}) but gave {got} where mxref gives {spec}. "
            "Record the deviation for this version in spec_tests/third_party.py."
        )


def test_records_are_well_formed():
    ids = [d.id for d in KNOWN_DEVIATIONS]
    assert len(ids) == len(set(ids))
    for d in KNOWN_DEVIATIONS:
        assert d.behaviour
        assert d.checked
        assert len(d.deviant) == len(d.spec())
