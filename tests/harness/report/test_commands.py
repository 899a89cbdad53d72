"""The report subcommands (as cli.py will wire them) and the end-of-run finalize()."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.redaction import KnownSecrets
from harness.report.bundle import BundleRefused
from harness.report.commands import COMMANDS, add_subcommands, finalize
from harness.report.layout import OSCAL_FILE, REPORT_HTML, SARIF_FILE
from harness.report.seal import SEAL_FILE, SealStatus, verify


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="votriz-audit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    assert args.handler is COMMANDS[args.command]
    return COMMANDS[args.command](args)


def test_finalize_renders_exports_and_signs(fault_run: Path) -> None:
    done = finalize(fault_run, KnownSecrets())

    assert done.report_html == fault_run / REPORT_HTML and done.sarif == fault_run / SARIF_FILE
    assert done.oscal == fault_run / OSCAL_FILE and done.oscal_skipped is None
    assert done.bundle.signer.kind == "throwaway"
    assert verify(fault_run).status is SealStatus.UNTRUSTED


def test_the_report_names_the_fingerprint_of_the_key_that_seals_it(fault_run: Path, tmp_path: Path) -> None:
    key = tmp_path / "auditor.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    done = finalize(fault_run, KnownSecrets(), key)

    assert done.bundle.signer.kind == "file"
    fingerprint = done.bundle.signer.fingerprint
    assert fingerprint.startswith("sha256:")
    assert fingerprint in (fault_run / REPORT_HTML).read_text()


def test_finalize_refuses_to_sign_a_leaking_run_but_still_renders(fault_run: Path) -> None:
    secrets = KnownSecrets()
    secrets.add("hsm-user-pin-987654", "HSM user PIN")
    (fault_run / "evidence" / "transit.hsts" / "leak.txt").write_text("pin=hsm-user-pin-987654\n")

    with pytest.raises(BundleRefused, match="known secret"):
        finalize(fault_run, secrets)

    assert (fault_run / REPORT_HTML).is_file()
    assert "hsm-user-pin-987654" not in (fault_run / REPORT_HTML).read_text()
    assert not (fault_run / SEAL_FILE).exists()


def test_sign_then_verify_exit_codes(tmp_path: Path, fault_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = Ed25519PrivateKey.generate()
    key_path = tmp_path / "k.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    public = tmp_path / "k.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))

    assert run_cli(["sign", str(fault_run), "--key", str(key_path)]) == 0
    assert run_cli(["verify", str(fault_run), "--public-key", str(public)]) == 0
    assert run_cli(["verify", str(fault_run), "--trust-file", str(public)]) == 0
    # Without a key named, the operator's seal is intact but not trusted.
    assert run_cli(["verify", str(fault_run)]) == 2
    assert "intact, signer not trusted" in capsys.readouterr().out
    assert run_cli(["verify", str(fault_run), "--allow-untrusted"]) == 0
    assert "WHO SIGNED IS UNKNOWN" in capsys.readouterr().out
    (fault_run / "junit.xml").write_text("<testsuites/>")
    assert run_cli(["verify", str(fault_run), "--public-key", str(public)]) == 1
    assert run_cli(["verify", str(fault_run), "--allow-untrusted"]) == 1

    assert "changed: junit.xml" in capsys.readouterr().out


def test_sign_and_report_leave_a_sealed_dir_as_it_is(tmp_path: Path, fault_run: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["sign", str(fault_run)]) == 0
    before = {p: p.read_bytes() for p in fault_run.rglob("*") if p.is_file()}

    assert run_cli(["sign", str(fault_run), "--out", str(tmp_path / "resigned")]) == 0
    assert run_cli(["report", str(fault_run), "--out", str(tmp_path / "rerendered")]) == 0

    assert {p: p.read_bytes() for p in fault_run.rglob("*") if p.is_file()} == before
    assert "is sealed and stays as it is" in capsys.readouterr().err
    assert verify(tmp_path / "resigned").status is SealStatus.UNTRUSTED
    assert (tmp_path / "rerendered" / REPORT_HTML).is_file()
    assert not (tmp_path / "rerendered" / SEAL_FILE).exists()
    # The new directory is never one that exists.
    assert run_cli(["sign", str(fault_run), "--out", str(tmp_path / "resigned")]) == 3


def test_verify_refuses_an_unusable_trusted_key_with_3(tmp_path: Path, fault_run: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")

    assert run_cli(["verify", str(fault_run), "--public-key", str(bad)]) == 3
    assert run_cli(["verify", str(fault_run), "--public-key", str(tmp_path / "absent.pem")]) == 3


def test_sign_refuses_a_leak_with_exit_4(fault_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (fault_run / "LEAKS.txt").write_text("results.json:10: canary password (raw)\n")

    assert run_cli(["sign", str(fault_run)]) == 4
    assert "results.json:10: canary password (raw)" in capsys.readouterr().err


def test_diff_exit_codes(clean_run: Path, fault_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["diff", str(clean_run), str(fault_run)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert run_cli(["diff", str(fault_run), str(clean_run)]) == 0
    assert "No regression" in capsys.readouterr().out


def test_report_re_renders_with_a_comparison(clean_run: Path, fault_run: Path) -> None:
    assert run_cli(["report", str(fault_run), "--against", str(clean_run)]) == 0

    assert "Compared with an earlier run" in (fault_run / REPORT_HTML).read_text()
    assert (fault_run / SARIF_FILE).is_file()


@pytest.mark.parametrize("argv", [["report", "{empty}"], ["diff", "{empty}", "{empty}"], ["verify", "{missing}"],
                                  ["sign", "{missing}"]])
def test_usage_errors_exit_3(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [a.format(empty=empty, missing=tmp_path / "nowhere") for a in argv]

    assert run_cli(argv) == 3
    assert "votriz-audit:" in capsys.readouterr().err


def test_verify_of_an_unsigned_dir_fails_with_1(fault_run: Path) -> None:
    assert run_cli(["verify", str(fault_run)]) == 1
