"""What the plugin's own tests run it on through pytester: a target no check can reach, and the
check modules more than one of them runs."""

from __future__ import annotations

from pathlib import Path

from harness.plugin import plugin_args

# A pass, a fail and a probe error: the three endings a sealed run must show.
PASS_FAIL_AND_PROBE_ERROR = '''
import pytest
from harness.outcomes import ProbeError, Verdict

@pytest.fixture(scope="session")
def broken_probe():
    raise ProbeError("edge 127.0.0.1:9 refused the connection")

@pytest.mark.claims("TRANSIT-TLS13")
def check_passes(evidence):
    evidence.attach("observed", {"versions": ["TLSv1.3"]})
    evidence.conclude(Verdict.passed("only TLS 1.3 accepted"))

@pytest.mark.claims("TRANSIT-HSTS")
def check_fails(evidence):
    evidence.conclude(Verdict.failed("no Strict-Transport-Security header on /"))

@pytest.mark.claims("TRANSIT-SECURITY-HEADERS")
def check_probe_error(broken_probe, evidence):
    evidence.conclude(Verdict.passed("unreachable"))
'''

# Two checks that end without an observation; a module of their own needs "import pytest" before.
NOT_APPLICABLE_AND_MANUAL = '''
@pytest.mark.claims("INTERNAL-BRIDGE-NETWORK")
def check_not_applicable(evidence):
    evidence.not_applicable("the target runs no containers")

@pytest.mark.claims("REST-DB-ENCRYPTED-VOLUMES")
def check_manual(evidence):
    evidence.manual("attest the volume encryption")
'''


def unreachable_target(directory: Path, *sections: str, backend: str | None = "remote") -> Path:
    """Write ``target.toml`` in ``directory``: an edge at 127.0.0.1:9, where nothing answers.

    Args:
        directory: where to write it.
        sections: more TOML lines, after the edge's.
        backend: the profile's backend line, or None for none.
    """
    lines = ['name = "unit"', *([f'backend = "{backend}"'] if backend else []), "[edge]",
             'host = "votriz.test"', 'address = "127.0.0.1"', "https_port = 9", *sections]
    path = directory / "target.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def audit_argv(profile: Path, report: Path, *extra: str) -> tuple[str, ...]:
    """pytest's arguments for an audit of ``profile`` into ``report``, the plugin asked for as a
    user asks for it (``-p harness.plugin``); ``extra`` are more ``--votriz-…`` options."""
    return (*plugin_args(), "--votriz-target", str(profile), "--votriz-report-dir", str(report), *extra)
