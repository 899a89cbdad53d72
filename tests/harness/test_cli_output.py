"""The command line's own output: the verdict as the last line, secrets asked for once, quiet on a
closed pipe, help an engineer can live in, ``checks``, ``--check`` and ``faults``."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_cli import REPO, closed_port

from harness.checkdir import ACCESS, declared_checks
from harness.cli import (
    EXIT_CLOSED_OUTPUT,
    EXIT_ERROR,
    EXIT_PASS,
    EXIT_USAGE,
    UsageError,
    _build_parser,
    aligned,
    ask_prompted_secrets,
    main,
    selected_paths,
)
from harness.profile import SecretSource, parse_profile

#: What pytest's own reporting says; none of it may follow the tool's verdict.
PYTEST_WORDS = ("passed", "failed,", "skipped in", "warnings summary", "docs.pytest.org",
                "short test summary", "=====")


def _run(*argv: str, cwd: Path = REPO, env: dict[str, str] | None = None,
         timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def _unreachable_profile(tmp_path: Path) -> Path:
    port = closed_port()
    path = tmp_path / "target.toml"
    path.write_text(f'name = "unreachable"\n[edge]\nhost = "votriz.test"\naddress = "127.0.0.1"\n'
                    f'https_port = {port}\nhttp_port = {port}\n')
    return path


def _assert_ends_on_the_verdict(stdout: str, gate: str, code: int) -> None:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, stdout
    assert lines[-1].startswith(f"votriz-audit: verdict {gate}, exit {code} ("), stdout[-2000:]
    after = stdout[stdout.rindex("votriz-audit: verdict"):]
    assert not any(word in after for word in PYTEST_WORDS), after
    # Nor anywhere else: pytest's reporting is the tool's now.
    assert not any(word in stdout for word in ("warnings summary", "docs.pytest.org", "short test summary"))


# --- the verdict is the last line --------------------------------------------------------------


def test_run_output_ends_with_the_verdict_line_and_no_pytest_summary(tmp_path: Path) -> None:
    # Given an unreachable edge (every in-transit check ends ERROR or MANUAL)
    proc = _run("run", "--target", str(_unreachable_profile(tmp_path)), "--only", "transit",
                "--report-dir", str(tmp_path / "r"))
    # Then the checks' lines come first and the verdict, with the exit code it returns, last
    assert proc.returncode == EXIT_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "transit.tls_versions" in proc.stdout
    _assert_ends_on_the_verdict(proc.stdout, "ERROR", EXIT_ERROR)
    assert "partial: 9 of" in proc.stdout.splitlines()[-1]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.integration
def test_a_real_transit_run_ends_with_the_tools_verdict(clean_stack: Any, tmp_path: Path) -> None:
    # When the in-transit checks run against the clean reference service, as a pipeline runs them
    proc = _run("run", "--target", str(clean_stack.profile_path), "--only", "transit",
                "--report-dir", str(tmp_path / "r"))
    results = json.loads((tmp_path / "r" / "results.json").read_text())["summary"]
    # Then the last line is the tool's verdict, the gate's own, and pytest says nothing after it
    assert proc.returncode == results["exit_code"], proc.stdout[-3000:] + proc.stderr[-2000:]
    _assert_ends_on_the_verdict(proc.stdout, results["gate"].upper(), results["exit_code"])
    assert results["reason"] in proc.stdout.splitlines()[-1]
    assert "Traceback" not in proc.stdout + proc.stderr


# --- secrets are asked for once, before the run ------------------------------------------------


PROMPTED = """
name = "prompted"
[edge]
host = "votriz.test"
[database]
dsn = "host=127.0.0.1 dbname=votriz user=auditor"
password = { prompt = true }
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "votriz"
pin = { prompt = true }
[redis]
password = { file = "/nonexistent/redis-password" }
"""


def test_every_prompted_secret_is_asked_once_and_then_held_in_memory() -> None:
    profile = parse_profile(PROMPTED)
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return f"answer-{len(asked)}"

    # When the command line asks before the run
    assert ask_prompted_secrets(profile, ask) == ["database.password", "hsm.pin"]
    assert asked == ["database.password of prompted: ", "hsm.pin of prompted: "]
    # Then every later read returns the answer, without asking (as a probe reads it)
    def must_not_ask(prompt: str) -> str:
        raise AssertionError(f"asked again: {prompt}")

    assert profile.hsm is not None and profile.database is not None
    assert profile.hsm.pin.read("HSM user PIN", ask=must_not_ask) == "answer-2"
    assert profile.database.password is not None
    assert profile.database.password.read("database.password", ask=must_not_ask) == "answer-1"
    # And asking again asks nothing; the file-backed secret was never asked for
    assert ask_prompted_secrets(profile, must_not_ask) == []
    # The answers are in memory only: not in the profile's fields, dumps or repr
    assert "answer-" not in json.dumps(profile.model_dump(mode="json")) + repr(profile)


@pytest.mark.parametrize(("answer", "message"), [
    (EOFError(), "hsm.pin: prompt = true, but no answer could be read (no terminal?); give hsm.pin.file"),
    ("", "hsm.pin: prompt = true, but the answer was empty"),
])
def test_a_prompt_without_an_answer_is_a_usage_error(answer: object, message: str) -> None:
    profile = parse_profile(PROMPTED.replace("password = { prompt = true }", ""))

    def ask(prompt: str) -> str:
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, str)
        return answer

    with pytest.raises(UsageError, match=re.escape(message)):
        ask_prompted_secrets(profile, ask)


def test_a_prompt_source_asks_once_even_without_the_command_line() -> None:
    source = SecretSource(prompt=True)
    answers = iter(["first", "second"])
    assert source.read("pin", ask=lambda _: next(answers)) == "first"
    assert source.read("pin", ask=lambda _: next(answers)) == "first"
    assert SecretSource(prompt=True).read("pin", ask=lambda _: "fresh") == "fresh"


COUNTING_GETPASS = """
import json, os, sys, getpass
from pathlib import Path
asked = []
def fake(prompt="Password: ", stream=None):
    asked.append(prompt)
    name = "hsm-pin" if "pin" in prompt.lower() else "auditor-password"
    return (Path(os.environ["SECRETS_DIR"]) / name).read_text().strip()
getpass.getpass = fake
from harness.cli import main
try:
    code = main(sys.argv[1:])
finally:
    Path(os.environ["ASKED_FILE"]).write_text(json.dumps(asked))
sys.exit(code)
"""


@pytest.mark.integration
def test_a_run_asks_for_each_prompted_secret_once_before_the_first_check(clean_stack: Any,
                                                                         tmp_path: Path) -> None:
    # Given the clean stack's profile with the HSM PIN and the database password at a prompt
    text = clean_stack.profile_path.read_text()
    secrets_dir = clean_stack.state_dir / "secrets"
    text = re.sub(r'\[hsm\.pin\]\nfile = "[^"]*"', "[hsm.pin]\nprompt = true", text)
    text = re.sub(r'\[database\.password\]\nfile = "[^"]*"', "[database.password]\nprompt = true", text)
    assert text.count("prompt = true") == 2
    profile = tmp_path / "target.toml"
    profile.write_text(text)
    asked_file = tmp_path / "asked.json"
    # When three checks that read them run (the HSM probe's, a check's own read, the database's)
    proc = subprocess.run(
        [sys.executable, "-c", COUNTING_GETPASS, "run", "--target", str(profile), "--report-dir",
         str(tmp_path / "r"), "--check", "keys.hsm_hardware", "--check", "keys.read_at_start",
         "--check", "at_rest.postgres_version"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "SECRETS_DIR": str(secrets_dir), "ASKED_FILE": str(asked_file)})
    # Then each secret was asked for once, by the command line, and the checks observed with them
    asked = json.loads(asked_file.read_text())
    assert asked == ["database.password of votriz-reference-local: ",
                     "hsm.pin of votriz-reference-local: "], proc.stdout[-2000:] + proc.stderr[-2000:]
    outcomes = {r["check_id"]: r["outcome"]
                for r in json.loads((tmp_path / "r" / "results.json").read_text())["results"]}
    assert outcomes == {"keys.hsm_hardware": outcomes["keys.hsm_hardware"], "keys.read_at_start": "PASS",
                        "at_rest.postgres_version": "PASS"}, proc.stdout[-3000:]
    assert outcomes["keys.hsm_hardware"] != "ERROR"  # the token was listed with the PIN given once
    pins = [(secrets_dir / name).read_text().strip() for name in ("hsm-pin", "auditor-password")]
    assert not any(pin in proc.stdout + proc.stderr for pin in pins)


# --- a closed pipe ends quietly ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["schema", "faults", "checks"])
def test_a_reader_that_goes_away_ends_the_command_quietly(command: str) -> None:
    # Given a reader that closes the pipe before anything is written
    proc = subprocess.Popen([sys.executable, "-m", "harness", command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    # Then the command stops with the SIGPIPE status and says nothing
    assert proc.wait(timeout=60) == EXIT_CLOSED_OUTPUT
    assert err == ""


@pytest.mark.parametrize("command", ["schema", "faults", "checks"])
def test_head_takes_the_first_line_and_nothing_else_is_said(command: str) -> None:
    proc = subprocess.run(["sh", "-c", f'"{sys.executable}" -m harness {command} | head -1'],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0 and proc.stderr == ""
    assert len(proc.stdout.splitlines()) == 1 and proc.stdout.strip()


# --- --help ------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_says_what_the_tool_does_its_exit_codes_and_an_example_per_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "Audit whether a running system keeps the security promises" in out
    assert "``votriz-audit`` command line" not in out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", f"{EXIT_CLOSED_OUTPUT} "):
        assert f"\n{code}" in out
    for name, subparser in _subparsers(_build_parser()).items():
        assert subparser.epilog and f"votriz-audit {name}" in subparser.epilog, name
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert f"\n  votriz-audit {name}" in capsys.readouterr().out, name


def test_every_positional_and_option_has_help() -> None:
    for name, subparser in _subparsers(_build_parser()).items():
        for action in subparser._actions:
            assert action.help, f"{name} {action.metavar or action.dest} has no help"


def test_one_name_per_option_across_commands() -> None:
    # Given every option of every command, by the attribute it sets
    names: dict[str, set[str]] = {}
    for subparser in _subparsers(_build_parser()).values():
        for action in subparser._actions:
            if action.help is not argparse.SUPPRESS:
                names.setdefault(action.dest, set()).update(
                    option for option in action.option_strings if option.startswith("--"))
    # Then one thing has one name wherever it appears
    assert {dest: sorted(options) for dest, options in names.items() if len(options) > 1} == {}
    assert names["signing_key"] == {"--signing-key"}


def test_sign_key_still_works_and_says_it_is_deprecated(capsys: pytest.CaptureFixture[str]) -> None:
    args = _build_parser().parse_args(["sign", "some-dir", "--key", "auditor.pem"])
    assert args.signing_key == "auditor.pem"
    assert capsys.readouterr().err == "votriz-audit: --key is deprecated; use --signing-key\n"
    assert "--key" not in _subparsers(_build_parser())["sign"].format_help()


# --- checks, --check, faults -------------------------------------------------------------------


def _columns(lines: list[str]) -> list[int]:
    """Where each column after the first starts on the header line."""
    return [match.start() for match in re.finditer(r"(?<=  )\S", lines[0])]


def test_checks_lists_every_check_with_its_claims_and_access_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks"]) == EXIT_PASS
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()
    declared = declared_checks()
    assert len(table) == len(declared) + 1
    starts = _columns(table)
    for line, check in zip(table[1:], declared.values(), strict=True):
        assert line.startswith(check.check_id + " ")
        assert line[starts[0]:].startswith(",".join(check.access) + " ")
        assert line[starts[1]:] == ", ".join(check.claims)
    for kind, meaning in ACCESS.items():
        assert f"{kind}:" in out and meaning in out


def test_checks_json_is_for_machines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks", "--json"]) == EXIT_PASS
    document = json.loads(capsys.readouterr().out)
    assert document["access"] == ACCESS
    by_id = {check["check_id"]: check for check in document["checks"]}
    assert by_id["transit.hsts"] == {"check_id": "transit.hsts", "area": "transit",
                                     "claims": ["TRANSIT-HSTS"], "access": ["edge"]}
    assert by_id["keys.token_key_rotation"]["access"] == ["api", "database", "hsm", "destructive"]
    assert set(by_id) == set(declared_checks())


def test_check_selects_checks_beside_areas() -> None:
    declared = declared_checks()
    hsts = f"{declared['transit.hsts'].path}::check_hsts"
    assert selected_paths((), ["transit.hsts", "transit.hsts"]) == [hsts]
    # A check inside a selected area is collected once, with its area
    assert selected_paths(["transit"], ["transit.hsts"]) == [str(REPO / "checks" / "transit")]
    assert selected_paths(["transit"], ["keys.hsm_hardware"])[1].endswith("keys/hsm_hardware.py::check_hsm_hardware")
    assert selected_paths() == [str(REPO / "checks")]


def test_an_unknown_check_is_exit_3_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--check", "transit.nope", "--only", "transit"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown check(s) transit.nope; known: at_rest.backup_codes" in err
    assert "transit.tls_versions" in err and "Traceback" not in err


def test_run_check_runs_only_that_check_and_says_partial(tmp_path: Path) -> None:
    proc = _run("run", "--target", str(_unreachable_profile(tmp_path)), "--check", "transit.hsts",
                "--check", "transit.certificate", "--report-dir", str(tmp_path / "r"))
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert {r["check_id"] for r in results["results"]} == {"transit.hsts", "transit.certificate"}
    assert results["summary"]["partial"] is True
    assert proc.returncode == EXIT_ERROR
    _assert_ends_on_the_verdict(proc.stdout, "ERROR", EXIT_ERROR)
    assert "(partial: " in proc.stdout.splitlines()[-1]


def test_faults_are_aligned_with_the_backends_each_can_be_applied_on(
        capsys: pytest.CaptureFixture[str]) -> None:
    from system_under_test.faults import FAULTS

    assert main(["faults"]) == EXIT_PASS
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["FAULT", "BACKENDS", "BREAKS"]
    starts = _columns(lines)
    rows = {line.split()[0]: line for line in lines[1:]}
    for fault in FAULTS.values():
        line = rows[fault.name]
        assert line[starts[0]:].startswith(",".join(fault.backends) + " ")
        assert line[starts[1]:].startswith(",".join(fault.claims) + " ")
        assert line[starts[2]:] == fault.description
    assert rows["rotation-drops-requests"][starts[0]:].startswith("local ")
    assert rows["host-network"][starts[0]:].startswith("docker ")


def test_aligned_pads_every_column_but_the_last() -> None:
    assert aligned([("a", "bb", "x"), ("ccc", "d", "long last")]) == ["a    bb  x", "ccc  d   long last"]


# --- --jobs / --sample override the policy's [scan]; init is wired -----------------------------


def test_jobs_and_sample_override_the_policys_scan_in_the_run(tmp_path: Path) -> None:
    # When one check runs with --jobs 3 --sample 500 over the default policy (scan unset)
    proc = _run("run", "--target", str(_unreachable_profile(tmp_path)), "--check", "transit.hsts",
                "--jobs", "3", "--sample", "500", "--report-dir", str(tmp_path / "r"))
    # Then the run judged with those values: results.json's policy says them
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["policy"]["scan"] == {"jobs": 3, "sample_rows": 500}
    _assert_ends_on_the_verdict(proc.stdout, "ERROR", EXIT_ERROR)


@pytest.mark.parametrize(("flag", "value", "key"), [("--sample", "0", "scan.sample_rows"),
                                                    ("--jobs", "-1", "scan.jobs")])
def test_a_scan_override_out_of_range_is_one_usage_line(flag: str, value: str, key: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--backend", "local", flag, value]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"votriz-audit: {key}: ") and err.count("\n") == 1, err


def test_init_help_gives_an_example_and_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["init", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "votriz-audit init --docker-project votriz --output prod.toml" in out
    assert "exit codes: 0 the draft was written" in out and f"{EXIT_USAGE} nothing" in out


def test_init_names_what_it_describes_or_stops_with_one_line(tmp_path: Path) -> None:
    # Neither --docker-project nor --local: a usage error
    proc = _run("init")
    assert proc.returncode == EXIT_USAGE and "one of the arguments --docker-project --local" in proc.stderr
    # A Compose project that does not exist (or no engine at all): one line, nothing written
    proc = _run("init", "--docker-project", "h19a-no-such-project", "--output", str(tmp_path / "p.toml"))
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stderr.startswith("votriz-audit init: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "p.toml").exists()


# --- what reaches the reader's terminal ------------------------------------------------------


def test_printable_shows_every_control_character_escaped() -> None:
    from harness.cli_output import printable

    # Given a Server header a hostile edge sent: cursor up, erase line, CR, a C1 CSI, DEL, a newline
    hostile = "nginx/1.25.3\x1b[1A\x1b[2K\rPASS\x9b2J\x7f\nnext\ttab"
    # Then every control character is shown escaped, the rest (non-ASCII included) as it was
    assert printable(hostile) == "nginx/1.25.3\\x1b[1A\\x1b[2K\\x0dPASS\\x9b2J\\x7f\\x0anext\\x09tab"
    assert printable("café — ok") == "café — ok"
    assert printable("line\u2028sep") == "line\\u2028sep"


def test_printable_never_leaves_a_control_character() -> None:
    import unicodedata

    from hypothesis import given
    from hypothesis import strategies as st

    from harness.cli_output import printable

    @given(st.text())
    def no_control_left(text: str) -> None:
        shown = printable(text)
        assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
        assert printable(shown) == shown  # what is shown is already printable

    no_control_left()
