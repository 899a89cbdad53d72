"""The reference service seen from the auditor: found through entry points, or one line saying how
to install it."""

from __future__ import annotations

import pytest

from harness import reference
from harness.cli import EXIT_USAGE, main


@pytest.mark.parametrize("argv", [["faults"], ["up", "--backend", "local"], ["down"], ["calibrate"],
                                  ["run", "--backend", "local"]])
def test_without_the_reference_service_commands_say_how_to_install_it(
        argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(reference, "entry_points", lambda group: [])
    assert main(argv) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [f"votriz-audit: {reference.INSTALL_HINT}"]


def test_faults_are_listed_once_in_the_registry_s_order_whatever_the_backends_order() -> None:
    from system_under_test.faults import FAULTS

    backends = reference.reference_backends()
    for order in (list(backends.values()), list(reversed(backends.values()))):
        assert [fault.name for fault in reference.all_faults(order)] == list(FAULTS)
