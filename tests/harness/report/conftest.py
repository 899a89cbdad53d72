"""Hand-made runs for the report tests: a run with faults and a clean run of the same target.

The results are built with the real models and the real claims catalogue, so
they stay valid as those evolve; the evidence files copy the shapes the checks
attach (``checks/*.py``), plus a few awkward ones (a missing file, a file of
an unknown shape, broken JSON) that the report must survive.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.claims import load_catalogue
from harness.outcomes import Outcome
from harness.results import (
    Attestation,
    CheckResult,
    RunResults,
    WaiverNote,
    claim_results,
    summarise,
    write_junit,
    write_results_json,
)

T0 = dt.datetime(2026, 11, 30, 21, 0, 0, tzinfo=dt.UTC)
POLICY = {"path": "fixtures/policy/default.toml", "name": "votriz-default", "version": "2026.11",
          "bcrypt": {"cost": 12}, "tls": {"allowed_versions": ["TLSv1.3"]}}

_VERSIONS = ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


def _tls_versions(fault: bool) -> dict[str, Any]:
    rows = []
    for version in _VERSIONS:
        accepted = version == "TLSv1.3" or (fault and version == "TLSv1.2")
        suites = (["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"]
                  if version == "TLSv1.3" else
                  ["ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"] if accepted else [])
        rows.append({"version": version, "allowed": version == "TLSv1.3", "tested": True,
                     "accepted": accepted, "cipher_suites": suites, "error": None})
    return {"target": "votriz.test at 127.0.0.1:8443", "allowed_versions": ["TLSv1.3"],
            "versions": rows, "sslyze_version": "6.3.1"}


def _headers_sample(path: str, fault: bool) -> dict[str, Any]:
    csp = [] if fault and path == "/api/health" else ["default-src 'self'; frame-ancestors 'none'"]
    return {"url": f"https://votriz.test:8443{path}", "status": 200,
            "missing": ["content-security-policy"] if not csp else [],
            "frame_protection": "x-frame-options", "version_banners": [],
            "headers": {"content-security-policy": csp, "x-content-type-options": ["nosniff"],
                        "referrer-policy": ["no-referrer"], "permissions-policy": ["camera=()"],
                        "x-frame-options": ["DENY"], "server": ["nginx"],
                        "x-powered-by": [], "x-aspnet-version": [], "x-aspnetmvc-version": []}}


def _timeline(fault: bool) -> dict[str, Any]:
    rows = []
    for i in range(40):
        t = round(i * 0.5, 3)
        markers = ["rotation-start"] if i == 12 else ["rotation-end"] if i == 27 else []
        during = 12 <= i <= 27
        errors = 3 if fault and i in (18, 19) else 0
        rows.append({"t_s": t, "requests": 44 - (6 if during else 0) - errors * 2, "errors": errors,
                     "p50_ms": 18.0 + (4.0 if during else 0.0), "p99_ms": 41.0 + (25.0 if during else 0.0)
                     + (120.0 if errors else 0.0), "markers": markers})
    rows.append({"t_s": 20.0, "requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None, "markers": []})
    window = {"requests": 520, "ok": 520, "errors": 0, "connection_errors": 0, "p50_ms": 18.0,
              "p99_ms": 41.0, "max_ms": 60.2, "error_kinds": {}}
    during = {**window, "errors": 6 if fault else 0, "ok": 514 if fault else 520,
              "error_kinds": {"HTTP 500": 6} if fault else {}, "p99_ms": 66.0}
    return {"bucket_s": 0.5, "timeline": rows, "before": window, "during": during, "after": window,
            "total": {**window, "requests": 1560}, "concurrency": 4, "duration_s": 20.4,
            "first_failures": [{"t_s": 9.1, "op": "GET /channels", "status": 500, "error": None, "ms": 161.0}]
            if fault else []}


_HSM_OBJECTS = [
    {"label": "votriz/jwt-signing", "class": "SECRET_KEY", "key_type": "GENERIC_SECRET", "id": "jwt",
     "token": True, "private": True, "sensitive": True, "extractable": False, "always_sensitive": True,
     "never_extractable": True, "local": False, "value_len": 64},
    {"label": "votriz/token-key/v2", "class": "SECRET_KEY", "key_type": "GENERIC_SECRET", "id": "tk2",
     "token": True, "private": True, "sensitive": True, "extractable": False, "always_sensitive": True,
     "never_extractable": True, "local": False, "value_len": 44},
    {"label": "votriz/api/anthropic", "class": "DATA", "key_type": None, "id": "anthropic",
     "token": True, "private": True, "sensitive": False, "extractable": True, "always_sensitive": False,
     "never_extractable": False, "local": False, "value_len": 108},
]


# (check_id, outcome in the fault run, outcome in the clean run, message, evidence {name: data}, details)
def _checks(fault: bool) -> list[tuple[str, Outcome, str, dict[str, Any], dict[str, Any], str]]:
    tls = _tls_versions(fault)
    return [
        ("at_rest.plaintext_sweep", Outcome.ERROR if fault else Outcome.PASS,
         "Could not read the sessions table: permission denied for the auditor role." if fault else
         "No known secret appears in any of the 41 columns swept (3 encodings each).",
         {"sweep-log": "swept users.email (1,204 rows)\nswept channels.access_token_enc (3,000 rows)\n"
                       "sessions: ERROR permission denied\n" if fault else "swept 41 columns\n"}, {}, ""),
        ("at_rest.data_inventory", Outcome.PASS, "Every column is encrypted, hashed, or on the page's "
         "list of plaintext categories.", {"inventory": [
             {"table": "users", "column": "email", "category": "account identity", "stored": "plaintext"},
             {"table": "users", "column": "password_hash", "category": "password", "stored": "bcrypt"},
             {"table": "channels", "column": "access_token_enc", "category": "OAuth token",
              "stored": "fernet"}]}, {}, ""),
        ("keys.hsm_custody", Outcome.PASS, "All 14 expected key classes are on the token, sensitive and "
         "never extractable; the JWT and token ring are proven in use.",
         {"hsm-objects": {"kind": "hsm_objects", "objects": _HSM_OBJECTS}}, {}, ""),
        ("keys.no_key_elsewhere", Outcome.FAIL if fault else Outcome.PASS,
         "The JWT signing secret (raw) appears in config /srv/votriz/.env:3." if fault else
         "No key value or key-shaped string was found in 212 files and 5 process environments.",
         {"search": {"hits": ["JWT signing secret (raw) in config /srv/votriz/.env:3"] if fault else [],
                     "coverage": {"files": 212, "bytes": 1843221, "processes": 5},
                     "keys": {"votriz/jwt-signing": "sha256:1f2e3d4c5b6a"}}},
         {"file": "/srv/votriz/.env", "line": 3} if fault else {}, ""),
        ("keys.token_key_rotation", Outcome.FAIL if fault else Outcome.PASS,
         "6 of 1560 requests failed during the token key rotation (6 x HTTP 500)." if fault else
         "0 of 1560 requests failed; all 3000 rows now decrypt under the new ring only.",
         {"timeline": {"kind": "rotation_timeline", **_timeline(fault)}, "rotation": {"rows_before": 3000, "rows_after": 3000,
                                                     "rows_lost": [], "max_p99_ratio": 3.0}}, {}, ""),
        ("at_rest.tokens_fernet", Outcome.PASS, "All 3000 access tokens are valid Fernet tokens under the "
         "HSM's token key.", {}, {"rows": 3000, "valid": 3000}, ""),
        ("at_rest.postgres_version", Outcome.PASS, "The server reports PostgreSQL 15.10.", {},
         {"server_version": "15.10"}, ""),
        ("at_rest.volume_encryption", Outcome.MANUAL, "The data directory's storage cannot be seen from a "
         "database connection.", {}, {}, ""),
        ("at_rest.backup_encrypted", Outcome.PASS, "The newest 3 backups are encrypted (no plaintext "
         "SQL header, high entropy).", {"backups": [
             {"name": "2026-11-30.dump.enc", "bytes": 1048576, "entropy_bits_per_byte": 7.998},
             {"name": "2026-11-29.dump.enc", "bytes": 1040000, "entropy_bits_per_byte": 7.997}]}, {}, ""),
        ("at_rest.backup_retention", Outcome.PASS, "Backups span 30 days, none older.", {}, {}, ""),
        ("at_rest.restore_drill", Outcome.PASS, "The last restore drill ran 12 days ago.", {}, {}, ""),
        ("at_rest.password_hashes", Outcome.FAIL if fault else Outcome.PASS,
         "3 of 43 password hashes use bcrypt cost 10 (policy: 12)." if fault else
         "All 43 password hashes are bcrypt with cost 12.",
         {"password-hashes": {"kind": "bcrypt_histogram", "cost_histogram": {"12": 40, "10": 3} if fault else {"12": 43},
                              "schemes": {"bcrypt": 43}, "rows": 43}}, {}, ""),
        ("at_rest.backup_codes", Outcome.PASS, "All 10 backup codes are stored as bcrypt hashes; the "
         "canary's codes appear nowhere in plaintext.", {}, {}, ""),
        ("at_rest.recovery_tokens", Outcome.PASS, "The recovery token is stored as a bcrypt hash.", {}, {}, ""),
        ("transit.tls_versions", Outcome.FAIL if fault else Outcome.PASS,
         "The edge accepts TLSv1.2, which the policy does not allow (allowed: TLSv1.3)." if fault else
         "The edge accepts only TLSv1.3 (3 cipher suites); every version from SSLv2 to TLSv1.3 was tried.",
         {"tls-versions": {"kind": "tls_versions", **tls}, "sslyze-scan": {"host": "votriz.test", "port": 8443,
                                               "versions": [{"version": v, "completed": True} for v in _VERSIONS],
                                               "hsts": {"max_age": 31536000}}}, tls, ""),
        ("transit.certificate", Outcome.PASS, "The edge certificate chains to the profile's trust anchor "
         "and has 89 days left.", {"certificate": {"subject": "CN=votriz.test", "issuer": "CN=Votriz Test CA",
                                                   "days_left": 89.4, "dns_names": ["votriz.test"],
                                                   "key": "EC secp256r1 (256 bits)"}}, {}, ""),
        ("transit.hsts", Outcome.PASS, "All 2 sampled responses send HSTS with max-age ≥ 31536000.",
         {"hsts": {"kind": "header_transcript", "samples": [{"url": "https://votriz.test:8443/", "status": 200,
                                "headers": ["max-age=63072000; includeSubDomains"], "max_age": 63072000,
                                "include_subdomains": True, "preload": False}],
                   "min_max_age_s": 31536000, "require_include_subdomains": True}}, {}, ""),
        ("transit.http_redirect_only", Outcome.PASS, "Every sampled path on http port 8080 answers only a "
         "301 redirect.", {"http-redirects": {"kind": "header_transcript", "samples": [
             {"url": "http://votriz.test:8080/", "status": 301, "location": "https://votriz.test:8443/",
              "content_type": "text/html", "body_bytes": 169,
              "body_excerpt": "<html><head><title>301 Moved Permanently</title></head>", "problem": None}],
             "redirect_statuses": [301, 308]}}, {}, ""),
        ("transit.origin_not_plaintext", Outcome.PASS, "None of the 4 TCP listeners serves plain HTTP.",
         {"origin-listeners": {"processes": ["api", "edge"], "listeners": [
             {"process": "api", "pid": 4242, "command": "gunicorn", "address": "127.0.0.1", "port": 8001,
              "judgement": "a TLS listener; rejects plain HTTP with 400"}]}}, {}, ""),
        ("containers.bridge_networks", Outcome.NOT_APPLICABLE, "The target runs on the local backend: no "
         "containers to inspect.", {}, {}, ""),
        ("containers.isolation", Outcome.NOT_APPLICABLE, "The target runs on the local backend.", {}, {}, ""),
        ("containers.published_ports", Outcome.NOT_APPLICABLE, "The target runs on the local backend.",
         {}, {}, ""),
        ("transit.outbound_https", Outcome.WAIVED, "The Resend call never reached the fakes within 10s. "
         "(waived until 2026-12-31: capture proxy being rebuilt)", {"outbound-calls": {"steps": [],
                                                                                      "captured": []}}, {}, "waive"),
        ("transit.security_headers", Outcome.FAIL if fault else Outcome.PASS,
         "Security headers are missing or unsafe: /api/health (200) lacks content-security-policy." if fault
         else "All 2 sampled responses carry the policy's headers.",
         {"security-headers": {"kind": "header_transcript", "basis": "The page's 'Security headers' section lists no headers.",
                               "required": ["content-security-policy", "x-content-type-options"],
                               "samples": [_headers_sample("/", fault), _headers_sample("/api/health", fault)]},
          "odd-shape": {"weird": [[1, 2], [3, {"deep": {"deeper": {"deepest": [1]}}}]], "<b>html</b>": "<script>x</script>"},
          "broken": "{not json"}, {}, ""),
        ("keys.jwt_rotation", Outcome.PASS, "After the JWT rotation every old session was refused.", {}, {}, ""),
        ("keys.db_password_rotation", Outcome.PASS, "The database password rotated; 0 failed requests.",
         {}, {}, ""),
        ("keys.redis_password_rotation", Outcome.PASS, "The Redis password rotated; 0 failed requests.",
         {}, {}, ""),
        ("keys.read_at_start", Outcome.PASS, "No service process holds a key or the PIN in its environment.",
         {}, {}, "missing-evidence"),
    ]


def build_run(report_dir: Path, *, fault: bool, run_id: str | None = None) -> RunResults:
    """Write a complete hand-made report directory (results.json, junit.xml, evidence) and return it."""
    catalogue = load_catalogue()
    report_dir.mkdir(parents=True, exist_ok=True)
    results = []
    listed = _checks(fault)
    # A check added to checks/ since these runs were written PASSes in both, so that every
    # promise of the real catalogue is judged (the hand-made runs are complete runs).
    named = {entry[0] for entry in listed}
    listed += [(check_id, Outcome.PASS, "Passed (hand-made run).", {}, {}, "")
               for check_id in sorted(catalogue.check_ids() - named)]
    for check_id, outcome, message, evidence, details, special in listed:
        paths = []
        for name, data in evidence.items():
            folder = report_dir / "evidence" / check_id
            folder.mkdir(parents=True, exist_ok=True)
            if name == "broken":
                file = folder / "broken.json"
                file.write_text(data)
            elif isinstance(data, str):
                file = folder / f"{name}.txt"
                file.write_text(data)
            else:
                file = folder / f"{name}.json"
                file.write_text(json.dumps(data, indent=2, sort_keys=True))
            paths.append(f"evidence/{check_id}/{file.name}")
        if special == "missing-evidence":
            paths.append(f"evidence/{check_id}/processes.json")
        claims = catalogue.claims_of_check(check_id)
        waiver = (WaiverNote(applied=True, original_outcome=Outcome.ERROR, justification="capture proxy being rebuilt",
                             approved_by="security@votriz.test", expires=dt.date(2026, 12, 31))
                  if special == "waive" else None)
        results.append(CheckResult(finding_id=f"{check_id}/{'+'.join(claims)}", check_id=check_id, claims=claims,
                                   outcome=outcome, message=message, details=details, evidence=tuple(paths),
                                   duration_s=0.42, waiver=waiver))
    attestations = {"REST-TOKENS-LIBRARY": Attestation(path="attestations/tokens-library.md", sha256="ab" * 32)}
    claims = claim_results(catalogue, results, attestations)
    run = RunResults(run_id=run_id or ("fault0000001" if fault else "clean0000001"), started_at=T0,
                     finished_at=T0 + dt.timedelta(seconds=95.3),
                     target={"name": "votriz-reference-local", "backend": "local",
                             "edge": "https://votriz.test:8443"},
                     policy=POLICY, catalogue={"title": catalogue.title, "page": catalogue.page},
                     summary=summarise(results, claims), results=tuple(results),
                     claims=tuple(claims))
    write_results_json(run, report_dir / "results.json")
    write_junit(run, report_dir / "junit.xml")
    return run


@pytest.fixture
def fault_run(tmp_path: Path) -> Path:
    """A report directory of a run with faults (FAIL, ERROR, WAIVED, MANUAL, N/A and odd evidence)."""
    build_run(tmp_path / "fault-run", fault=True)
    return tmp_path / "fault-run"


@pytest.fixture
def clean_run(tmp_path: Path) -> Path:
    """A report directory of the same target without faults."""
    build_run(tmp_path / "clean-run", fault=False)
    return tmp_path / "clean-run"


@pytest.fixture
def make_run() -> Callable[..., RunResults]:
    return build_run


def sample_bundle(directory: Path) -> Path:
    """A fault run, finalised: report, exports, signed manifest (throwaway key)."""
    from harness.report.commands import finalize

    report_dir = directory / "bundle"
    build_run(report_dir, fault=True)
    finalize(report_dir, known_secrets=None, now=T0)
    return report_dir


_BUNDLE_FILES: list[str] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``bundle_file``: every file of a finalised bundle, the seal included."""
    if "bundle_file" in metafunc.fixturenames:
        if not _BUNDLE_FILES:
            import tempfile

            with tempfile.TemporaryDirectory() as scratch:
                root = sample_bundle(Path(scratch))
                _BUNDLE_FILES.extend(sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                                            if p.is_file()))
        metafunc.parametrize("bundle_file", _BUNDLE_FILES)


@pytest.fixture(scope="session")
def _bundle_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_bundle(tmp_path_factory.mktemp("bundle-template"))


@pytest.fixture
def bundle(tmp_path: Path, _bundle_template: Path) -> Path:
    """A finalised bundle of the fault run (a fresh copy for each test)."""
    import shutil

    return Path(shutil.copytree(_bundle_template, tmp_path / "bundle"))
