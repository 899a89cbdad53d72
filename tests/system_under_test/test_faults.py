"""The fault registry: faults.toml read into FAULTS, and a malformed table refused in one line."""

from __future__ import annotations

import pytest

from system_under_test.faults import FAULTS, Layer, load_faults


def test_the_shipped_table_names_each_fault_with_its_claims_layer_and_backends() -> None:
    # In the table's order (the order `votriz-audit faults` lists them in).
    assert list(FAULTS)[:2] == ["tls12-accepted", "hsts-missing"]
    for name, fault in FAULTS.items():
        assert fault.name == name
        assert fault.claims and all(claim.isupper() for claim in fault.claims), name
        assert fault.description.endswith("."), name
        assert fault.backends and set(fault.backends) <= {"local", "docker"}, name
    assert FAULTS["db-port-published"].claims == ("INTERNAL-ONLY-80-443", "INTERNAL-BRIDGE-NETWORK")
    assert FAULTS["rotation-drops-requests"].backends == ("local",)
    assert FAULTS["tls12-accepted"].layer is Layer.EDGE


def test_a_row_without_backends_can_be_applied_by_both() -> None:
    faults = load_faults('[a]\nclaims = ["X"]\nlayer = "api"\ndescription = "A."\n')
    assert faults["a"].backends == ("local", "docker")
    assert faults["a"].layer is Layer.API


@pytest.mark.parametrize(("row", "message"), [
    ('claims = ["X"]\nlayer = "api"\n', "fault a: no description"),
    ('claims = ["X"]\nlayer = "api"\ndescription = "A."\nbackend = ["local"]\n',
     "fault a: unknown field(s) backend"),
    ('claims = ["X"]\nlayer = "db"\ndescription = "A."\n',
     "fault a: unknown layer 'db'; known: edge, api, ops, stack"),
])
def test_a_malformed_row_is_refused_in_one_line(row: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        load_faults("[a]\n" + row)
    assert str(refused.value) == message
