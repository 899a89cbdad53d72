"""VERIFY.md's recipe, run with bash, openssl and coreutils alone (no project code) on a real run's
bundle: the plugin on a small check set, sealed with the operator's key. Also what ``votriz-audit
verify`` says of the same bundle, of a re-signed forgery and of a throwaway-signed one, and that it
starts without pytest."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytester_checks import PASS_FAIL_AND_PROBE_ERROR, audit_argv, unreachable_target

from harness.report.bundle import sign_bundle
from harness.report.seal import FILE_LIST, SEAL_FILE, VERIFY_MD, SealStatus, copy_unsealed, verify

CHECKS = PASS_FAIL_AND_PROBE_ERROR


def _keypair(tmp: Path, name: str) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp / f"{name}.pem", tmp / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def real_run(pytester: pytest.Pytester, *extra: str) -> Path:
    """The plugin's own run of CHECKS against an unreachable target, finalised and sealed by it."""
    pytester.makepyfile(**{"transit/endings": CHECKS})
    pytester.makeini("[pytest]\npython_files = *.py\npython_functions = check_*\n")
    profile = unreachable_target(pytester.path)
    report = pytester.path / "report"
    pytester.runpytest(*audit_argv(profile, report, *extra))
    assert (report / SEAL_FILE).is_file(), "the run sealed its bundle"
    return report


def run_recipe(bundle: Path, trusted: Path) -> subprocess.CompletedProcess[str]:
    """The sh block of the bundle's VERIFY.md, in bash, with only the system's tools on PATH."""
    script = re.search(r"```sh\n(.*?)```", (bundle / VERIFY_MD).read_text(), re.S)
    assert script is not None
    return subprocess.run(["bash", "-c", script.group(1)], cwd=bundle, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "TRUSTED_KEY": str(trusted)})


def verify_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "verify", *argv], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def operator_bundle(pytester: pytest.Pytester, tmp_path: Path) -> tuple[Path, Path]:
    private, public = _keypair(tmp_path, "operator")
    return real_run(pytester, "--votriz-signing-key", str(private)), public


def test_the_recipe_verifies_a_real_run_with_openssl_and_sha256sum(operator_bundle: tuple[Path, Path]) -> None:
    bundle, public = operator_bundle

    done = run_recipe(bundle, public)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature Verified Successfully" in done.stdout
    # The fingerprint VERIFY.md names is the trusted key's, as openssl and sha256sum compute it.
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(public), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    fingerprint = subprocess.run(["sha256sum"], input=der, capture_output=True, check=True).stdout[:64].decode()
    assert done.stdout.splitlines()[-1].startswith(f"OK: signed by the trusted key (sha256:{fingerprint})")
    assert verify_cli(str(bundle), "--public-key", str(public)).returncode == 0


@pytest.mark.parametrize("tamper", ["changed", "added", "removed", "list-edited"])
def test_the_recipe_fails_on_any_tampering(operator_bundle: tuple[Path, Path], tamper: str) -> None:
    bundle, public = operator_bundle
    results = bundle / "results.json"
    if tamper == "changed":
        results.write_text(results.read_text().replace('"FAIL"', '"PASS"'))
    elif tamper == "added":
        (bundle / "evidence" / "planted.json").write_text("{}")
    elif tamper == "removed":
        (bundle / "junit.xml").unlink()
    else:  # the changed file's new digest written into the list too
        results.write_text(results.read_text().replace('"FAIL"', '"PASS"'))
        listing = (bundle / FILE_LIST).read_text().splitlines()
        digest = subprocess.run(["sha256sum", "results.json"], cwd=bundle, capture_output=True,
                                text=True, check=True).stdout[:64]
        (bundle / FILE_LIST).write_text("".join(
            (f"{digest}  results.json" if line.endswith("  results.json") else line) + "\n" for line in listing))

    assert run_recipe(bundle, public).returncode != 0
    assert verify_cli(str(bundle), "--public-key", str(public)).returncode == 1


def test_a_re_signed_forgery_fails_the_recipe_and_verify(operator_bundle: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    # Given the operator's sealed bundle, when a forger turns its FAIL into a PASS and re-seals a
    # copy with a throwaway key (which carries its own, valid, public key) ...
    bundle, public = operator_bundle
    forged = copy_unsealed(bundle, tmp_path / "forged")
    (forged / "results.json").write_text((forged / "results.json").read_text().replace('"FAIL"', '"PASS"'))
    sign_bundle(forged)

    # ... then the recipe under the operator's key fails at the signature ...
    done = run_recipe(forged, public)
    assert done.returncode != 0 and "OK" not in done.stdout
    # ... and verify says intact but not trusted (exit 2), with and without the operator's key.
    for argv in ([str(forged), "--public-key", str(public)], [str(forged)]):
        check = verify_cli(*argv)
        assert check.returncode == 2, check.stdout + check.stderr
        assert "intact, signer not trusted" in check.stdout
    assert verify_cli(str(forged), "--allow-untrusted").returncode == 0


def test_a_throwaway_signed_run_is_not_trusted(pytester: pytest.Pytester) -> None:
    bundle = real_run(pytester)

    check = verify_cli(str(bundle))

    assert check.returncode == 2 and "THROWAWAY" in check.stdout, check.stdout + check.stderr
    assert verify(bundle).status is SealStatus.UNTRUSTED


def test_verify_starts_without_pytest_within_a_second(operator_bundle: tuple[Path, Path]) -> None:
    bundle, public = operator_bundle
    probe = textwrap.dedent(f"""
        import resource, sys
        from harness.cli import main
        code = main(["verify", {str(bundle)!r}, "--public-key", {str(public)!r}])
        used = resource.getrusage(resource.RUSAGE_SELF)
        print(code, "pytest" in sys.modules, used.ru_utime + used.ru_stime)
    """)

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)

    code, pytest_loaded, cpu = done.stdout.split()[-3:]
    assert (code, pytest_loaded) == ("0", "False"), done.stdout + done.stderr
    # CPU time, not wall time: the shared test machine's load does not count against it.
    assert float(cpu) < 1.0, cpu
