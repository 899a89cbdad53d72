"""The command line: exit codes, one-line errors, evidence never overwritten, bounded failure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import EXIT_ERROR, EXIT_PASS, EXIT_USAGE, main


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _profile(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "target.toml"
    path.write_text(f'name = "unreachable"\n[edge]\nhost = "votriz.test"\naddress = "127.0.0.1"\n'
                    f'https_port = {port}\nhttp_port = {port}\n')
    return path


def test_bad_command_line_is_exit_3_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "--no-such-option"])
    assert exc.value.code == EXIT_USAGE
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--only", "nope"], "unknown area(s) nope"),
    (["run", "--fault", "nope", "--only", "transit"], "unknown fault(s) nope"),
    (["up", "--fault", "nope"], "unknown fault(s) nope"),
    (["run", "--backend", "local", "--fault", "host-network", "--only", "transit"],
     "fault(s) host-network cannot be applied by the local backend (--backend docker)"),
    (["up", "--backend", "docker", "--fault", "rotation-drops-requests"],
     "fault(s) rotation-drops-requests cannot be applied by the docker backend (--backend local)"),
    (["run", "--policy", "/nonexistent/policy.toml"], "/nonexistent/policy.toml: cannot read the policy"),
    (["run", "--target", "/nonexistent/target.toml"], "/nonexistent/target.toml: cannot read the profile"),
])
def test_bad_inputs_are_exit_3_and_name_the_problem(argv: list[str], message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_target_and_fault_do_not_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--target", str(_profile(tmp_path, 9)), "--fault", "hsts-missing",
                 "--report-dir", str(tmp_path / "r")]) == EXIT_USAGE
    assert "only apply when standing up the reference service" in capsys.readouterr().err


def test_a_report_dir_holding_evidence_is_never_overwritten(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r"
    report.mkdir()
    (report / "results.json").write_text("{}")
    assert main(["run", "--target", str(_profile(tmp_path, 9)), "--report-dir", str(report)]) == EXIT_USAGE
    assert "already holds files; evidence is never overwritten" in capsys.readouterr().err
    assert (report / "results.json").read_text() == "{}"


def test_an_unwritable_report_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "--target", str(_profile(tmp_path, 9)), "--report-dir", str(blocker / "r")]) == EXIT_USAGE
    assert "cannot write there" in capsys.readouterr().err


def test_unreachable_target_gives_errors_and_exit_2_quickly(tmp_path: Path) -> None:
    # Given a profile whose edge port is closed
    report = tmp_path / "report"
    start = time.monotonic()
    # When the in-transit checks run (in a child process, as a pipeline would run them)
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--target", str(_profile(tmp_path, _closed_port())),
                           "--only", "transit", "--report-dir", str(report)],
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    # Then nothing passes, every check says it could not verify, and the gate exits 2
    assert proc.returncode == EXIT_ERROR, proc.stdout + proc.stderr
    results = json.loads((report / "results.json").read_text())["results"]
    outcomes = {r["check_id"]: r["outcome"] for r in results}
    assert "PASS" not in outcomes.values() and "FAIL" not in outcomes.values()
    assert outcomes["transit.tls_versions"] == "ERROR"
    assert took < 60
    assert "Traceback" not in proc.stdout + proc.stderr


def test_faults_lists_every_fault_with_its_claim(capsys: pytest.CaptureFixture[str]) -> None:
    from system_under_test.faults import FAULTS

    assert main(["faults"]) == EXIT_PASS
    out = capsys.readouterr().out
    for fault in FAULTS.values():
        assert fault.name in out and fault.claims[0] in out


def test_schema_is_generated_from_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == EXIT_PASS
    schema = json.loads(capsys.readouterr().out)
    assert {"schema_version", "tool_version", "target", "policy", "results"} <= set(schema["properties"])


def test_run_defaults_to_docker_where_an_engine_answers_else_local(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from harness.cli import default_backend

    # This machine runs an engine, as root, with mmdebstrap: the container topology is audited
    assert default_backend() == ("docker", "a Docker engine answers: the reference service runs as containers")
    # Without an engine the local processes stand in, and the reason is said
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    backend, why = default_backend()
    assert backend == "local" and why.startswith("no Docker engine answers: ")


# --- up / down / calibrate without --backend ------------------------------------------------


class _FakeStack:
    """A backend module's interface (up, down, StackError) that records what it was asked."""

    class StackError(Exception):
        pass

    def __init__(self, name: str, calls: list[tuple[str, str, Path]]) -> None:
        self.name, self.calls = name, calls

    def up(self, state_dir: Path, faults: list[str]) -> object:
        self.calls.append(("up", self.name, state_dir))
        return type("Info", (), {"profile_path": state_dir / "target.toml"})()

    def down(self, state_dir: Path) -> None:
        self.calls.append(("down", self.name, state_dir))


@pytest.fixture
def stacks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Path]]:
    from harness import cli

    calls: list[tuple[str, str, Path]] = []
    monkeypatch.setattr(cli, "_backend_module", lambda backend: _FakeStack(backend, calls))
    monkeypatch.setattr(cli, "default_backend", lambda: ("docker", "an engine answers (test)"))
    return calls


def test_up_without_backend_takes_run_s_choice_and_says_so_on_stderr(
        stacks: list[tuple[str, str, Path]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--state-dir", str(tmp_path / "s")]) == EXIT_PASS
    out, err = capsys.readouterr()
    assert stacks == [("up", "docker", tmp_path / "s")]
    # stdout is the profile's path alone, for scripts
    assert out.strip() == str(tmp_path / "s" / "target.toml")
    assert "backend docker (an engine answers (test); --backend chooses)" in err


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_down_takes_the_backend_that_made_the_state_directory(
        backend: str, stacks: list[tuple[str, str, Path]], tmp_path: Path) -> None:
    from system_under_test.backends import BACKENDS

    marker = BACKENDS[backend].marker
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / marker).touch()
    assert main(["down", "--state-dir", str(tmp_path / "s")]) == EXIT_PASS
    assert stacks == [("down", backend, tmp_path / "s")]


def test_down_refuses_a_directory_up_did_not_make(stacks: list[tuple[str, str, Path]],
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["down", "--state-dir", str(tmp_path)]) == EXIT_USAGE
    assert "was not made by `votriz-audit up`: not removing it" in capsys.readouterr().err
    assert stacks == [] and (tmp_path / "precious.txt").exists()
    # A directory that does not exist is already down.
    assert main(["down", "--state-dir", str(tmp_path / "gone")]) == EXIT_PASS
    assert stacks == []


def test_help_shows_the_exit_codes_of_the_gate(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "Exit codes of ``run``" in out
        assert "nothing was\n      verified" in out and "--require-attestations" in out
        assert "is gone in NEW" in out


# --- a reader that goes away while the reference service stands up ----------------------------

#: ``votriz-audit run --backend local`` with the stand-up replaced by a stack whose profile names
#: an edge that refuses connections; its take-down leaves a mark.
_RUN_ON_A_FAKE_STACK = """
import sys
from pathlib import Path
from harness import cli

profile, state_dir, report = (Path(arg) for arg in sys.argv[1:4])

class Stack:
    name = "local"
    class StackError(Exception):
        pass
    def up(self, state_dir, faults):
        return type("Info", (), {"profile_path": profile})()
    def down(self, state_dir):
        (profile.parent / "taken-down").touch()

cli._backend_module = lambda backend: Stack()
sys.exit(cli.main(["run", "--backend", "local", "--state-dir", str(state_dir), "--check", "transit.hsts",
                   "--report-dir", str(report)]))
"""


def test_a_reader_gone_during_the_stand_up_does_not_give_up_the_audit(tmp_path: Path) -> None:
    from pytester_checks import unreachable_target

    from harness.cli import EXIT_CLOSED_OUTPUT

    profile, report = unreachable_target(tmp_path), tmp_path / "report"
    # Given stdout a pipe whose reader has already gone (`run --backend local | head -0`)
    read, write = os.pipe()
    os.close(read)
    try:
        # When the reference service is stood up and audited
        proc = subprocess.run([sys.executable, "-c", _RUN_ON_A_FAKE_STACK, str(profile), str(tmp_path / "state"),
                               str(report)], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
                              check=False)
    finally:
        os.close(write)
    # Then the audit ran, wrote and sealed its results, and took the stack down, as with --target
    results = json.loads((report / "results.json").read_text())
    assert [r["check_id"] for r in results["results"]] == ["transit.hsts"], proc.stderr[-2000:]
    assert (report / "audit.intoto.jsonl").exists()
    assert (tmp_path / "taken-down").exists()
    # And only then did the closed output end the command, quietly
    assert proc.returncode == EXIT_CLOSED_OUTPUT, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_sigterm_ends_a_run_as_ctrl_c_does_with_the_operator_command_it_runs(tmp_path: Path) -> None:
    import signal
    import sys
    import time

    from harness.cli import EXIT_ERROR

    # Given the command line running an operator command that would finish its work after 3 s
    marker = tmp_path / "still-running"
    child = ("import argparse, sys\nfrom harness import cli\nfrom harness.commands import run_operation\n"
             "def parser():\n    p = argparse.ArgumentParser()\n    p.add_argument('command')\n    return p\n"
             "cli._build_parser = parser\n"
             f"cli.COMMANDS['sleepy'] = lambda a: run_operation(['sh', '-c', 'sleep 3; touch {marker}'], 30).returncode\n"
             "sys.exit(cli.main(['sleepy']))\n")
    run = subprocess.Popen([sys.executable, "-c", child], stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    # When a pipeline cancels it (SIGTERM)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=20)
    # Then it ends as interrupted, and the command it ran ends with it
    assert run.returncode == EXIT_ERROR and "votriz-audit: interrupted" in stderr
    time.sleep(3)
    assert not marker.exists()
