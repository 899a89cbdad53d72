"""A full audit leaks nothing: every byte it writes, terminal included, is searched for every secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import CHECKS_DIR, CHECKS_INI
from harness.plugin import RUN_STATE, plugin_args
from harness.redaction import KnownSecrets


class _GrabSecrets:
    """Copies the run's known secrets before the nested session ends."""

    def __init__(self) -> None:
        self.secrets: list[tuple[bytes, str]] = []

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.secrets = session.config.stash[RUN_STATE].known_secrets.items()


@pytest.mark.integration
@pytest.mark.slow
def test_a_full_audit_writes_no_secret_anywhere(stack_factory, tmp_path: Path,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    # Given a private reference stack (the audit rotates its keys) and the secrets we know of it
    with stack_factory() as info:
        state = info.profile_path.parent
        independent = {"HSM PIN": (state / "secrets" / "hsm-pin").read_text().strip(),
                       "auditor password": (state / "secrets" / "auditor-password").read_text().strip()}
        report = tmp_path / "report"
        grab = _GrabSecrets()
        # When every check runs against it, in this process, with the terminal captured
        code = pytest.main([str(CHECKS_DIR), "-c", str(CHECKS_INI), "--rootdir", str(CHECKS_DIR.parent),
                            *plugin_args(), "--votriz-target", str(info.profile_path),
                            "--votriz-report-dir", str(report)],
                           plugins=[grab])
        out, err = capfd.readouterr()
    # Then the audit ran and learnt secrets: canaries, key values, the PIN
    assert (report / "results.json").exists(), (code, out[-2000:], err[-2000:])
    labels = {label for _, label in grab.secrets}
    assert len(grab.secrets) >= 10, labels
    assert any("canary" in label for label in labels), labels
    secrets = KnownSecrets()
    for value, label in grab.secrets:
        secrets.add(value, label)
    for label, value in independent.items():
        secrets.add(value, label)
    # And none of them, in any encoding, is in any file it wrote or in what it printed
    hits = [f"{path.relative_to(report)}:{offset}: {label}"
            for path in sorted(report.rglob("*")) if path.is_file()
            for label, offset in secrets.find_in(path.read_bytes())]
    hits += [f"terminal:{offset}: {label}" for label, offset in secrets.find_in((out + err).encode())]
    assert hits == []
    assert not (report / "LEAKS.txt").exists()
    assert (report / "audit.intoto.jsonl").exists(), "a clean run's bundle is sealed"
