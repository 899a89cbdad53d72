"""at_rest judgements on hand-made observations: each check on both sides, outcome and message."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from checks import at_rest
from checks.at_rest import (
    BackupCodesObservation,
    BackupObservation,
    CanaryTokenResult,
    CodeMatching,
    DrillObservation,
    DuplicateCounter,
    InventoryObservation,
    PasswordObservation,
    RecoveryObservation,
    RetentionObservation,
    SweepArea,
    SweepObservation,
    TokenObservation,
)
from harness.canaries import Canary, CanaryChannel, recovery_token_from_mail
from harness.formats.bcrypt_hash import HashMatch
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.outcomes import Outcome, Verdict
from harness.policy import load_policy
from harness.probes import backups as backup_probe
from harness.probes.backups import (
    BackupInspection,
    CommandRun,
    aged_backup_name,
    inspect_backup,
    shannon_entropy,
)
from harness.probes.database import ColumnInfo, DatabaseServer
from harness.profile import parse_profile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepHit

POLICY = load_policy()
KEY = FernetKey(b"k" * 32, "votriz/token-encryption/v1")
OTHER = FernetKey(b"o" * 32, "other")
OK_RUN = CommandRun("backup", 0, 1.0, '{"ok": true}', "")


# --- tokens_fernet ---------------------------------------------------------------------------

def _scan(values: list[object], keys: list[FernetKey] = [KEY],  # noqa: B006
          duplicates: DuplicateCounter | None = None) -> at_rest.FernetColumnScan:
    return at_rest.scan_fernet_cells(enumerate(values, 1), "channels.access_token_enc", keys,
                                     now=2_000_000, max_clock_skew_s=300,
                                     duplicates=duplicates or DuplicateCounter())


def test_fernet_scan_counts_garbage_by_reason_without_crashing() -> None:
    good = encrypt_fernet_token(b"t", KEY, now=1_000_000)
    scan = _scan([good, "plain-token", None, b"\xff\xfe", 42,
                  encrypt_fernet_token(b"t", OTHER, now=1_000_000), "A" * 2_000_000])
    assert scan.rows == 7 and scan.valid == 1
    assert scan.failures == {"not_base64": 2, "missing": 1, "not_text": 1, "bad_hmac": 1,
                             "bad_version": 1}
    assert scan.examples[0] == "row 2: not_base64"
    assert scan.keys_used == {"votriz/token-encryption/v1": 1}


def test_duplicate_counter_sees_a_fixed_iv() -> None:
    duplicates = DuplicateCounter()
    iv = bytes(16)
    cells = [encrypt_fernet_token(f"t{i}".encode(), KEY, now=1_000_000, iv=iv) for i in range(4)]
    cells.append(encrypt_fernet_token(b"x", KEY, now=1_000_000))
    _scan(cells, duplicates=duplicates)
    assert duplicates.result() == (4, 1, 0)


def _tokens(**changes: object) -> TokenObservation:
    base = dict(ring=("votriz/token-encryption/v1",),
                columns=(at_rest.FernetColumnScan("channels.access_token_enc", 10, 10, {}, (),
                                                  {"votriz/token-encryption/v1": 10}),),
                shared_iv_cells=0, shared_iv_groups=0, shared_ciphertext_cells=0,
                canary=tuple(CanaryTokenResult(p, k, "matches") for p in at_rest.PLATFORMS
                             for k in ("access", "refresh")))
    base.update(changes)
    return TokenObservation(**base)  # type: ignore[arg-type]


def test_tokens_pass() -> None:
    verdict = at_rest.tokens_fernet_verdict(_tokens())
    assert verdict.outcome is Outcome.PASS
    assert "All 10 token cells" in verdict.message
    assert "canary's 10 tokens (5 platforms) decrypt to exactly what was handed in" in verdict.message


def test_tokens_fail_on_plaintext_rows_and_canary() -> None:
    scan = at_rest.FernetColumnScan("channels.access_token_enc", 10, 8, {"not_base64": 2},
                                    ("row 4: not_base64", "row 9: not_base64"), {})
    canary = (CanaryTokenResult("tiktok", "access", "not_base64"),)
    verdict = at_rest.tokens_fernet_verdict(_tokens(columns=(scan,), canary=canary))
    assert verdict.outcome is Outcome.FAIL
    assert "2 of 10 cells of channels.access_token_enc are not Fernet tokens" in verdict.message
    assert "tiktok access (not_base64)" in verdict.message


def test_tokens_fail_on_shared_iv() -> None:
    verdict = at_rest.tokens_fernet_verdict(_tokens(shared_iv_cells=20, shared_iv_groups=1))
    assert verdict.outcome is Outcome.FAIL
    assert "20 token cells share an IV with another cell (1 IV used more than once)" in \
        verdict.message


PREFIX = "votriz/token-encryption/"


def test_key_ring_with_an_unreadable_key_is_error_naming_the_label() -> None:
    from harness.outcomes import ProbeError
    from harness.probes.hsm import KeyValues

    # Given a ring of two keys, one of which the HSM will not hand out
    values = KeyValues({"votriz/token-encryption/v1": b"k" * 32},
                       {"votriz/token-encryption/v2": "the value is sensitive (CKA_SENSITIVE) "
                                                      "and cannot be read"})
    # When the ring is assembled, Then the check cannot judge (ERROR), naming the key
    with pytest.raises(ProbeError) as error:
        at_rest.key_ring_from_values(PREFIX, values)
    assert str(error.value) == (
        "the token-encryption key ring under 'votriz/token-encryption/' cannot be read whole from "
        "the HSM ('votriz/token-encryption/v2': the value is sensitive (CKA_SENSITIVE) and cannot "
        "be read), so tokens under that key could not be verified")


def test_key_ring_read_whole_is_used() -> None:
    from harness.outcomes import ProbeError
    from harness.probes.hsm import KeyValues

    ring = at_rest.key_ring_from_values(PREFIX, KeyValues({
        "votriz/token-encryption/v1": b"k" * 32, "votriz/token-encryption/v2": b"o" * 32}))
    assert [k.label for k in ring] == ["votriz/token-encryption/v1", "votriz/token-encryption/v2"]
    with pytest.raises(ProbeError, match="no token-encryption key under"):
        at_rest.key_ring_from_values(PREFIX, KeyValues({}))


def test_tokens_check_is_error_not_fail_when_a_ring_key_is_unreadable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.outcomes import ProbeError
    from harness.probes.hsm import KeyValues

    # Given an HSM whose ring has one readable and one unreadable key
    class _Snapshot:
        values = KeyValues({"votriz/token-encryption/v1": b"k" * 32},
                           {"votriz/token-encryption/v2": "2 objects share this label"})

    monkeypatch.setattr(at_rest.hsm_probe, "snapshot", lambda *a, **k: _Snapshot())
    profile = _profile(DATABASE + HSM)
    # When the observation starts, Then it stops before any cell is judged, naming the key
    with pytest.raises(ProbeError, match="'votriz/token-encryption/v2': 2 objects share"):
        at_rest.observe_tokens(profile, POLICY, KnownSecrets(), None)  # type: ignore[arg-type]


def test_canary_tokens_read_back() -> None:
    channel = CanaryChannel("tiktok", 7, "canary.at.tiktok.x", "canary.rt.tiktok.y")
    canary = Canary("run", "canary+run@audit.invalid", "pw", channels=(channel,))
    stored = {7: (encrypt_fernet_token(b"canary.at.tiktok.x", KEY), "canary.rt.tiktok.y")}
    results = at_rest.canary_token_results(canary, stored, [KEY], now=2e9, max_clock_skew_s=1e10)
    assert [(r.kind, r.result) for r in results] == [("access", "matches"),
                                                      ("refresh", "not_base64")]
    assert at_rest.canary_token_results(canary, {}, [KEY], now=0, max_clock_skew_s=0)[0].result \
        == "row missing"


# --- password_hashes -------------------------------------------------------------------------

H12 = bcrypt.hashpw(b"pw", bcrypt.gensalt(12)).decode()
H10 = H12.replace("$12$", "$10$")


def test_password_hashes_pass_and_histogram() -> None:
    scan = at_rest.scan_hash_cells(enumerate([H12, H12], 1), "users.password_hash", 12)
    verdict = at_rest.password_hashes_verdict(PasswordObservation(scan, "match", 12), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("All 2 password hashes are well-formed bcrypt with work "
                                      "factor 12.")
    assert verdict.details["cost_histogram"] == {"12": 2}


def test_password_hashes_fail_on_cost_10_and_plaintext() -> None:
    scan = at_rest.scan_hash_cells(enumerate([H12, H10, "hunter22", None], 1),
                                   "users.password_hash", 12)
    verdict = at_rest.password_hashes_verdict(PasswordObservation(scan, "match", 10), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "2 of 4 password hashes are not bcrypt (plaintext_like 1, missing 1" in verdict.message
    assert "1 of 4 bcrypt hashes do not use work factor 12 (1 at cost 10; e.g. row 2: cost 10)" \
        in verdict.message


def test_password_hashes_fail_when_canary_does_not_verify() -> None:
    scan = at_rest.scan_hash_cells(enumerate([H12], 1), "users.password_hash", 12)
    verdict = at_rest.password_hashes_verdict(PasswordObservation(scan, "no_match", 12), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "canary's password does not verify against its own row (no_match)" in verdict.message


# --- backup_codes ----------------------------------------------------------------------------

def _fake_check(code: str, stored: object) -> HashMatch:
    return HashMatch.MATCH if stored == f"hash({code})" else HashMatch.NO_MATCH


def test_matching_in_order_costs_one_check_per_code() -> None:
    codes = [f"code{i}" for i in range(10)]
    rows = [(100 + i, f"hash(code{i})") for i in range(10)]
    matching = at_rest.match_codes_to_rows(codes, rows, check=_fake_check)
    assert matching.verifications == 10 and not matching.unmatched_codes
    assert matching.pairs[0] == (1, 100)


def test_matching_out_of_order_stops_at_first_match() -> None:
    codes = [f"code{i}" for i in range(10)]
    rows = [(100 + i, f"hash(code{9 - i})") for i in range(10)]
    matching = at_rest.match_codes_to_rows(codes, rows, check=_fake_check)
    assert not matching.unmatched_codes and not matching.unmatched_rows
    assert 10 < matching.verifications <= 60 < 100


def test_matching_reports_codes_without_rows() -> None:
    matching = at_rest.match_codes_to_rows(["a", "b"], [(1, "hash(a)"), (2, "b")],
                                           check=_fake_check)
    assert matching.unmatched_codes == (2,) and matching.unmatched_rows == (2,)


def _codes(**changes: object) -> BackupCodesObservation:
    base = dict(codes_returned=10, shown_again=(), rows=10, row_schemes={"bcrypt": 10},
                matching=CodeMatching(tuple((i, 100 + i) for i in range(1, 11)), (), (), 10),
                redeem_first=200, redeem_second=401)
    base.update(changes)
    return BackupCodesObservation(**base)  # type: ignore[arg-type]


def test_backup_codes_pass() -> None:
    verdict = at_rest.backup_codes_verdict(_codes())
    assert verdict.outcome is Outcome.PASS
    assert "each verified by exactly one code (10 bcrypt verifications)" in verdict.message


def test_backup_codes_fail_when_reusable() -> None:
    verdict = at_rest.backup_codes_verdict(_codes(redeem_second=200))
    assert verdict.outcome is Outcome.FAIL
    assert "a used code was accepted again (HTTP 200): codes are not one-time" in verdict.message


def test_backup_codes_fail_when_shown_again() -> None:
    verdict = at_rest.backup_codes_verdict(_codes(shown_again=("code 1", "code 2")))
    assert verdict.outcome is Outcome.FAIL
    assert "GET /mfa returned 2 of the backup codes again" in verdict.message


def test_codes_found_in_any_encoding() -> None:
    import base64

    text = '{"backup_codes": ["' + base64.b64encode(b"abcde-fghij").decode() + '"]}'
    assert at_rest.secrets_in_text(text, ["abcde-fghij", "zzzzz-yyyyy"], "code") == ("code 1",)


# --- recovery_tokens -------------------------------------------------------------------------

def _recovery(**changes: object) -> RecoveryObservation:
    base = dict(mail_received=True, in_request_answer=False, row_found=True, row_scheme="bcrypt",
                row_match="match", row_is_token=False, confirm_first=200, confirm_second=400)
    base.update(changes)
    return RecoveryObservation(**base)  # type: ignore[arg-type]


def test_recovery_pass() -> None:
    verdict = at_rest.recovery_tokens_verdict(_recovery())
    assert verdict.outcome is Outcome.PASS
    assert "worked once (HTTP 200) then was refused (HTTP 400)" in verdict.message


def test_recovery_fail_plaintext_and_reusable() -> None:
    verdict = at_rest.recovery_tokens_verdict(_recovery(row_is_token=True,
                                                        row_scheme="plaintext_like"))
    assert verdict.outcome is Outcome.FAIL
    assert "the stored row holds the token itself, in plaintext" in verdict.message
    verdict = at_rest.recovery_tokens_verdict(_recovery(confirm_second=200))
    assert "the token worked a second time (HTTP 200): it is not one-time" in verdict.message


def test_recovery_error_without_mail() -> None:
    verdict = at_rest.recovery_tokens_verdict(_recovery(mail_received=False))
    assert verdict.outcome is Outcome.ERROR


def test_recovery_token_read_from_mail() -> None:
    text = "Use this link:\nhttps://votriz.test:8443/recover?email=a%40b.c&token=abc_DEF-123\n"
    assert recovery_token_from_mail(text) == ("https://votriz.test:8443", "abc_DEF-123")
    assert recovery_token_from_mail("no link") == ("", None)


# --- data_inventory --------------------------------------------------------------------------

RULES = at_rest.load_inventory_rules()
FERNET = encrypt_fernet_token(b"x", KEY)


def _col(table: str, column: str, data_type: str = "text", **kw: bool) -> ColumnInfo:
    return ColumnInfo("public", table, column, data_type, **kw)


def test_inventory_classifies_the_reference_schema() -> None:
    findings = [
        at_rest.classify_column(_col("users", "email_enc"), RULES, [FERNET]),
        at_rest.classify_column(_col("users", "password_hash"), RULES, [H12]),
        at_rest.classify_column(_col("users", "email_index"), RULES, ["a" * 64],
                                ("canary+x@audit.invalid", "b" * 64)),
        at_rest.classify_column(_col("channels", "platform"), RULES, ["tiktok"]),
        at_rest.classify_column(_col("brands", "name"), RULES, []),
        at_rest.classify_column(_col("channels", "brand_id", "bigint", is_foreign_key=True),
                                RULES, []),
        at_rest.classify_column(_col("users", "notes"), RULES, []),
    ]
    assert [f.category for f in findings] == ["fernet", "bcrypt", "keyed_index", "enum",
                                               "listed_plaintext", "metadata", "empty"]
    assert all(f.ok for f in findings)
    assert "foreign key" in findings[5].basis
    verdict = at_rest.data_inventory_verdict(InventoryObservation(tuple(findings)))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("All 7 columns are accounted for")


def test_inventory_fails_on_a_plaintext_email_column() -> None:
    finding = at_rest.classify_column(_col("users", "contact_email"), RULES,
                                      ["canary+x@audit.invalid"])
    assert (finding.category, finding.ok) == ("plaintext", False)
    verdict = at_rest.data_inventory_verdict(InventoryObservation((finding,)))
    assert verdict.outcome is Outcome.FAIL
    assert "users.contact_email (text): stored in plaintext and not on the page's list" in \
        verdict.message


def test_inventory_fails_on_unkeyed_index_and_non_fernet_enc_column() -> None:
    import hashlib

    email = "canary+x@audit.invalid"
    unkeyed = hashlib.sha256(email.encode()).hexdigest()
    finding = at_rest.classify_column(_col("users", "email_index"), RULES, [unkeyed],
                                      (email, unkeyed))
    assert not finding.ok and "unkeyed digest" in finding.problem
    finding = at_rest.classify_column(_col("captions", "prompt_enc"), RULES, ["hello", FERNET])
    assert not finding.ok and finding.problem.startswith("1 of 2 sampled cells are not Fernet")


def test_inventory_error_on_blind_spots() -> None:
    finding = at_rest.classify_column(_col("brands", "name"), RULES, [])
    verdict = at_rest.data_inventory_verdict(InventoryObservation((finding,), ("public.secret",)))
    assert verdict.outcome is Outcome.ERROR
    assert "cannot read public.secret" in verdict.message


# --- postgres_version and volumes ------------------------------------------------------------

def test_postgres_version_both_sides() -> None:
    ok = at_rest.postgres_version_verdict(DatabaseServer(150020, "15.20", "a", "votriz", False))
    assert ok.outcome is Outcome.PASS and "major version 15" in ok.message
    bad = at_rest.postgres_version_verdict(DatabaseServer(160004, "16.4", "a", "votriz", False))
    assert bad.outcome is Outcome.FAIL
    assert "PostgreSQL 16.4 (major 16), not PostgreSQL 15" in bad.message


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def test_volume_encryption_manual_then_attested(tmp_path: Path) -> None:
    verdict = at_rest.attested_verdict(_profile(), "REST-DB-ENCRYPTED-VOLUMES",  # type: ignore[arg-type]
                                       at_rest.VOLUMES_ATTESTATION)
    assert verdict.outcome is Outcome.MANUAL and "lsblk" in verdict.message
    attestation = tmp_path / "volumes.txt"
    attestation.write_text("pgdata on dm-crypt\n")
    profile = _profile(f'[attestations]\nREST-DB-ENCRYPTED-VOLUMES = "{attestation}"\n')
    verdict = at_rest.attested_verdict(profile, "REST-DB-ENCRYPTED-VOLUMES", "x")  # type: ignore[arg-type]
    assert verdict.outcome is Outcome.PASS and str(attestation) in verdict.message


def _attested(tmp_path: Path, content: bytes | None) -> Verdict:
    attestation = tmp_path / "volumes.txt"
    if content is not None:
        attestation.write_bytes(content)
    profile = _profile(f'[attestations]\nREST-DB-ENCRYPTED-VOLUMES = "{attestation}"\n')
    return at_rest.attested_verdict(profile, "REST-DB-ENCRYPTED-VOLUMES",  # type: ignore[arg-type]
                                    at_rest.VOLUMES_ATTESTATION)


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_attestation_is_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    verdict = _attested(tmp_path, content)
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message.startswith(
        f"The attestation for REST-DB-ENCRYPTED-VOLUMES ({tmp_path / 'volumes.txt'}) is empty, "
        "so it attests nothing.")


def test_unreadable_attestation_is_error_naming_the_file(tmp_path: Path) -> None:
    verdict = _attested(tmp_path, None)
    assert verdict.outcome is Outcome.ERROR
    assert f"({tmp_path / 'volumes.txt'}) cannot be read: No such file or directory." in \
        verdict.message


def test_non_empty_attestation_passes_with_its_sha256(tmp_path: Path) -> None:
    import hashlib

    content = b"pgdata on dm-crypt (luks2, aes-xts-plain64), key in KMS key/votriz-db\n"
    verdict = _attested(tmp_path, content)
    digest = hashlib.sha256(content).hexdigest()
    assert verdict.outcome is Outcome.PASS
    assert f"(sha256 {digest[:16]}…)" in verdict.message
    assert verdict.details["sha256"] == digest


# --- missing profile sections ----------------------------------------------------------------

DATABASE = '[database]\ndsn = "host=db dbname=votriz user=votriz_auditor"\n'
HSM = '[hsm]\nmodule = "/usr/lib/p11.so"\ntoken_label = "votriz"\npin = { prompt = true }\n'


@pytest.mark.parametrize(("sections", "missing"), [
    ("", "no [database] section and no [hsm] section"),
    (HSM, "no [database] section"),
    (DATABASE, "no [hsm] section"),
])
def test_tokens_without_database_or_hsm_are_manual_not_na(sections: str, missing: str) -> None:
    verdict = at_rest.tokens_fernet_unavailable(_profile(sections))  # type: ignore[arg-type]
    assert verdict is not None and verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith(f"The profile has {missing}, so the token columns cannot")
    assert "By hand: on the service's database run `SELECT id, platform, access_token_enc" in \
        verdict.message
    assert "MultiFernet" in verdict.message


def test_tokens_with_database_and_hsm_run() -> None:
    assert at_rest.tokens_fernet_unavailable(_profile(DATABASE + HSM)) is None  # type: ignore[arg-type]


def test_password_hashes_without_database_are_manual_not_na() -> None:
    verdict = at_rest.password_hashes_unavailable(_profile(), POLICY)  # type: ignore[arg-type]
    assert verdict is not None and verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("The profile has no [database] section, so "
                                      "users.password_hash cannot be read. By hand:")
    assert "work factor 12 (prefix $2b$12$" in verdict.message
    assert at_rest.password_hashes_unavailable(_profile(DATABASE), POLICY) is None  # type: ignore[arg-type]


def test_inventory_without_database_is_manual_not_na() -> None:
    verdict = at_rest.data_inventory_unavailable(_profile())  # type: ignore[arg-type]
    assert verdict is not None and verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("The profile has no [database] section, so no inventory")
    assert "information_schema.columns" in verdict.message
    assert at_rest.data_inventory_unavailable(_profile(DATABASE)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["tokens_fernet", "password_hashes", "data_inventory"])
def test_checks_conclude_manual_without_a_database(name: str, tmp_path: Path) -> None:
    from harness.evidence import EvidenceRecorder
    from harness.outcomes import CheckOutcome

    # Given a profile with no [database] and no [hsm]
    recorder = EvidenceRecorder(f"at_rest.{name}", tmp_path, KnownSecrets())
    # When the check runs, Then it ends MANUAL before touching anything
    with pytest.raises(CheckOutcome) as ended:
        getattr(at_rest, f"check_{name}")(request=None, profile=_profile(), policy=POLICY,
                                          known_secrets=KnownSecrets(), evidence=recorder)
    assert ended.value.verdict.outcome is Outcome.MANUAL
    assert "By hand:" in ended.value.verdict.message


def test_no_at_rest_check_ends_not_applicable() -> None:
    # The page's at-rest promises apply to every target; a missing profile section is MANUAL.
    import inspect

    assert "not_applicable" not in inspect.getsource(at_rest)


# --- backups ---------------------------------------------------------------------------------

def _inspection(**changes: object) -> BackupInspection:
    base = dict(name="votriz-1.dump.enc", size=40000, sampled=40000, markers=(),
                encoding="base64 lines", entropy_bits=7.98, secret_hits=())
    base.update(changes)
    return BackupInspection(**base)  # type: ignore[arg-type]


def test_backup_encrypted_both_sides() -> None:
    ok = at_rest.backup_encrypted_verdict(BackupObservation(OK_RUN, _inspection()))
    assert ok.outcome is Outcome.PASS and "7.98 bits per byte (base64 lines)" in ok.message
    plain = _inspection(markers=("pg_dump custom-format header (PGDMP)",), encoding="binary",
                        entropy_bits=6.1, secret_hits=(SweepHit("canary e-mail (raw)", "f", 9),))
    bad = at_rest.backup_encrypted_verdict(BackupObservation(OK_RUN, plain))
    assert bad.outcome is Outcome.FAIL
    assert "it shows pg_dump custom-format header (PGDMP)" in bad.message
    assert "canary e-mail (raw) at offset 9" in bad.message
    assert "6.10 bits per byte (binary), below the 7.5 of ciphertext" in bad.message
    failed = CommandRun("backup", 1, 0.2, "", "pg_dump failed: boom")
    assert at_rest.backup_encrypted_verdict(BackupObservation(failed, None)).outcome is \
        Outcome.ERROR


def test_inspect_backup_reads_markers_and_entropy(tmp_path: Path) -> None:
    import os

    known = KnownSecrets()
    known.add("canary+x@audit.invalid", "canary e-mail")
    plain = tmp_path / "votriz-20260101T000000Z.dump.enc"
    plain.write_bytes(b"PGDMP\x01\x0e" + b"users canary+x@audit.invalid " * 100)
    found = inspect_backup(plain, SecretSweep.from_known(known))
    assert found.markers == ("pg_dump custom-format header (PGDMP)",)
    assert found.secret_hits and found.entropy_bits < 6
    key = FernetKey(os.urandom(32))
    enc = tmp_path / "enc"
    enc.write_text("\n".join(encrypt_fernet_token(os.urandom(3000), key) for _ in range(5)) + "\n")
    found = inspect_backup(enc, SecretSweep.from_known(known))
    assert found.encoding == "base64 lines" and found.entropy_bits > 7.5 and not found.markers


DUMP = b"PGDMP\x01\x0e\x00" + b"COPY public.users (id, email) FROM stdin;\n" * 200


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz", "zip"])
def test_compressed_dump_backup_fails_and_says_what_is_inside(tmp_path: Path,
                                                               compression: str) -> None:
    import bz2
    import gzip
    import lzma
    import os
    import zipfile

    # Given a pg_dump piped through a compressor, padded with random bytes so that
    # its entropy alone would look like ciphertext
    dump = DUMP + os.urandom(64 * 1024)
    path = tmp_path / f"votriz-20260101T000000Z.dump.{compression}"
    if compression == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("votriz.dump", dump)
    else:
        compress: dict[str, Callable[[bytes], bytes]] = {
            "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}
        path.write_bytes(compress[compression](dump))
    # When it is inspected and judged
    found = inspect_backup(path, SecretSweep.from_known(KnownSecrets()))
    verdict = at_rest.backup_encrypted_verdict(BackupObservation(OK_RUN, found))
    # Then the compression is seen through: FAIL, naming the format and the dump inside
    assert found.compression == compression and not found.markers
    assert found.decompressed_markers[0] == "pg_dump custom-format header (PGDMP)"
    assert verdict.outcome is Outcome.FAIL
    assert f"it is compressed, not encrypted ({compression}); its first" in verdict.message
    assert "decompressed bytes show pg_dump custom-format header (PGDMP)" in verdict.message


def test_compression_magic_alone_fails_even_when_not_decompressible() -> None:
    # zstd has no decoder in the standard library: the magic number alone is enough.
    zstd = _inspection(compression="zstd", decompressed=0, encoding="binary", entropy_bits=7.99)
    verdict = at_rest.backup_encrypted_verdict(BackupObservation(OK_RUN, zstd))
    assert verdict.outcome is Outcome.FAIL
    assert "it is compressed, not encrypted (zstd); its content could not be decompressed here" \
        in verdict.message
    assert backup_probe.compression_of(b"\x28\xb5\x2f\xfd\x00rest") == "zstd"
    assert backup_probe.compression_of(b"\xfd7zXZ\x00rest") == "xz"
    assert backup_probe.compression_of(b"gAAAAABk") == ""


def test_encrypted_backup_still_passes_and_says_no_compression() -> None:
    verdict = at_rest.backup_encrypted_verdict(BackupObservation(OK_RUN, _inspection()))
    assert verdict.outcome is Outcome.PASS
    assert "shows no dump header, no compression magic number and no known secret" in \
        verdict.message


def test_backup_too_small_to_sample_is_error_not_pass() -> None:
    tiny = _inspection(size=300, sampled=300, entropy_bits=7.9)
    verdict = at_rest.backup_encrypted_verdict(BackupObservation(OK_RUN, tiny))
    assert verdict.outcome is Outcome.ERROR
    assert "is only 300 bytes, too small (under 1024)" in verdict.message
    # A marker seen in a small file is still an observed FAIL.
    marked = _inspection(size=300, sampled=300, markers=("SQL COPY statement",))
    assert at_rest.backup_encrypted_verdict(BackupObservation(OK_RUN, marked)).outcome is \
        Outcome.FAIL


def test_entropy_and_aged_names() -> None:
    assert shannon_entropy(b"") == 0.0 and shannon_entropy(bytes(range(256))) == 8.0
    assert aged_backup_name("votriz-20261130T220000Z.dump.enc", 40, 1_764_540_000) == \
        "votriz-20251021T220000Z.dump.enc"
    assert aged_backup_name("nightly.tar", 1, 0).startswith("aged-19691231T000000Z-")


def _retention(**changes: object) -> RetentionObservation:
    base = dict(prune=OK_RUN, retention_days=30, old_name="old", old_removed=True,
                young_name="young", young_kept=True, newest_name="new", newest_kept=True)
    base.update(changes)
    return RetentionObservation(**base)  # type: ignore[arg-type]


def test_retention_both_sides() -> None:
    assert at_rest.backup_retention_verdict(_retention()).outcome is Outcome.PASS
    bad = at_rest.backup_retention_verdict(_retention(old_removed=False))
    assert bad.outcome is Outcome.FAIL
    assert "a backup older than 30 days (old) was kept" in bad.message


COUNTS = {"brands": 3, "users": 2}


def _drill(**changes: object) -> DrillObservation:
    base = dict(backup=OK_RUN, drill=OK_RUN, counts_at_backup=COUNTS,
                counts_at_drill={"brands": 4, "users": 2}, changed_tables=("brands",),
                entry={"ok": True, "tables": {"brands": {"expected": 3, "restored": 3},
                                              "users": {"expected": 2, "restored": 2}}},
                restored=COUNTS, previous_drill_age_days=None)
    base.update(changes)
    return DrillObservation(**base)  # type: ignore[arg-type]


def test_drill_pass() -> None:
    verdict = at_rest.restore_drill_verdict(_drill(), POLICY)
    assert verdict.outcome is Outcome.PASS
    assert "The canary changed brands after the backup" in verdict.message


def test_drill_reporting_live_counts_fails() -> None:
    live = {"brands": 4, "users": 2}
    entry = {"ok": True, "tables": {t: {"expected": n, "restored": n} for t, n in live.items()}}
    verdict = at_rest.restore_drill_verdict(
        _drill(entry=entry, restored=at_rest.restored_counts(entry)), POLICY)
    assert verdict.outcome is Outcome.FAIL
    assert "brands: 4 restored, 3 in the backup" in verdict.message
    assert "they are the live database's counts at drill time, so nothing was restored" in \
        verdict.message


def test_drill_fails_on_failure_and_stale_history() -> None:
    failed = at_rest.restore_drill_verdict(_drill(entry={"ok": False, "error": "boom"},
                                                  restored={}), POLICY)
    assert failed.outcome is Outcome.FAIL and "the drill reports failure (boom)" in failed.message
    stale = at_rest.restore_drill_verdict(_drill(previous_drill_age_days=45), POLICY)
    assert stale.outcome is Outcome.FAIL and "last drill was 45 days ago" in stale.message


# --- plaintext_sweep -------------------------------------------------------------------------

def _areas(*hits: SweepHit, problem: str = "", backups: bool = True,
           canary_secrets: int = 8) -> SweepObservation:
    return SweepObservation(12, 50, (
        SweepArea("database", True, 39, 7000, tuple(h for h in hits if
                                                     h.location.startswith("postgres:")),
                  sum(1 for h in hits if h.location.startswith("postgres:"))),
        SweepArea("redis", True, 2, 100, problem=problem),
        SweepArea("logs", True, 9, 9000, tuple(h for h in hits if h.location.endswith(".log")),
                  sum(1 for h in hits if h.location.endswith(".log"))),
        SweepArea("backups", True, 3, 30000) if backups
        else SweepArea("backups", False, note="no operations.backup_dir in the profile")),
        canary_secrets, "" if canary_secrets else "the profile has no [api] section")


def test_sweep_pass_names_what_was_searched() -> None:
    verdict = at_rest.plaintext_sweep_verdict(_areas())
    assert verdict.outcome is Outcome.PASS
    assert "None of 12 known secrets (8 of them the canary's; 50 encoded forms" in verdict.message
    assert "backups (3 places, 30000 bytes)." in verdict.message
    assert "not searched" not in verdict.message


def test_sweep_pass_says_how_many_short_secrets_it_did_not_search() -> None:
    obs = dataclasses.replace(_areas(), short_secrets=2)
    verdict = at_rest.plaintext_sweep_verdict(obs)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.endswith("(2 known secrets of 4 or 5 bytes not searched: as "
                                    "substrings they would match by chance)")
    assert verdict.details["short_secrets_not_swept"] == 2


def test_sweep_with_an_area_not_named_by_the_profile_is_manual_not_pass() -> None:
    verdict = at_rest.plaintext_sweep_verdict(_areas(backups=False))
    assert verdict.outcome is Outcome.MANUAL
    assert "No known secret was found in database (39 places, 7000 bytes), redis" in \
        verdict.message
    assert "but these areas were not searched: backups (no operations.backup_dir in the " \
        "profile). By hand (needles.txt:" in verdict.message
    assert "backups: take a fresh backup and search it" in verdict.message
    # An area missing from the observation altogether counts as not searched too.
    partial = SweepObservation(12, 50, _areas().areas[:1], 8)
    verdict = at_rest.plaintext_sweep_verdict(partial)
    assert verdict.outcome is Outcome.MANUAL
    assert "not searched: redis (not observed); logs (not observed); backups (not observed)" \
        in verdict.message


def test_sweep_with_nothing_named_is_manual_with_every_area() -> None:
    nothing = SweepObservation(3, 9, tuple(SweepArea(name, False, note=f"no {name} in the profile")
                                          for name in at_rest.SWEEP_AREAS), 3)
    verdict = at_rest.plaintext_sweep_verdict(nothing)
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("These areas were not searched: database (no database in "
                                      "the profile); redis")
    assert "redis: list every key (`redis-cli --scan`)" in verdict.message


def test_sweep_without_a_canary_secret_is_manual_not_pass() -> None:
    verdict = at_rest.plaintext_sweep_verdict(_areas(canary_secrets=0))
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("No canary secret was registered (the profile has no [api] "
                                      "section), so the sweep of database (39 places")
    assert "looked only for 12 other known secrets" in verdict.message
    assert "By hand: plant a test account through the API" in verdict.message


def test_sweep_hit_is_fail_even_with_partial_coverage_and_no_canary() -> None:
    hit = SweepHit("database password (raw)", "/state/logs/api.log", 7)
    verdict = at_rest.plaintext_sweep_verdict(_areas(hit, backups=False, canary_secrets=0))
    assert verdict.outcome is Outcome.FAIL
    assert "/state/logs/api.log (1 occurrence, first at offset 7: database password)" in \
        verdict.message


def test_sweep_fail_names_places_never_secrets() -> None:
    hits = (SweepHit("canary password (raw)", "/state/logs/api.log", 1234),
            SweepHit("canary e-mail (raw)", "postgres:users.contact_email", 0))
    verdict = at_rest.plaintext_sweep_verdict(_areas(*hits))
    assert verdict.outcome is Outcome.FAIL
    assert "(2 occurrences in 2 places)" in verdict.message
    assert "/state/logs/api.log (1 occurrence, first at offset 1234: canary password)" in \
        verdict.message
    assert "postgres:users.contact_email (1 occurrence: canary e-mail)" in verdict.message


def test_sweep_error_when_an_area_could_not_be_read() -> None:
    verdict = at_rest.plaintext_sweep_verdict(_areas(problem="Redis refused the password"))
    assert verdict.outcome is Outcome.ERROR
    assert "redis: Redis refused the password" in verdict.message
    both = at_rest.plaintext_sweep_verdict(_areas(problem="Redis refused", backups=False))
    assert both.outcome is Outcome.ERROR
    assert "Not searched at all: backups (no operations.backup_dir in the profile)." in \
        both.message


def test_sweep_counts_canary_secrets_by_label() -> None:
    known = KnownSecrets()
    known.add("canary+x@audit.invalid", "canary e-mail")
    known.add("db-password-value", "database password")
    profile = _profile()
    obs = at_rest.observe_sweep(profile, POLICY, known, "no [api]")  # type: ignore[arg-type]
    assert (obs.secrets, obs.canary_secrets, obs.canary_note) == (2, 1, "no [api]")
    assert [a.searched for a in obs.areas] == [False] * 4


def test_operations_unavailable_is_manual_with_instructions() -> None:
    profile = _profile()
    message = at_rest.operations_unavailable(profile, ("backup", "backup_dir"), "do X")  # type: ignore[arg-type]
    assert message is not None and "operations.backup, operations.backup_dir" in message
    assert message.endswith("By hand: do X")


@pytest.mark.parametrize("name", ["tokens_fernet", "password_hashes", "backup_codes",
                                  "recovery_tokens", "plaintext_sweep", "data_inventory",
                                  "postgres_version", "volume_encryption", "backup_encrypted",
                                  "backup_retention", "restore_drill"])
def test_every_check_exists_with_claims(name: str) -> None:
    check = getattr(at_rest, f"check_{name}")
    marks = [m for m in check.pytestmark if m.name == "claims"]
    assert marks and marks[0].args


def test_run_command_redacts_and_reports_failure_and_timeout() -> None:
    from harness.probes.backups import run_command

    known = KnownSecrets()
    known.add("s3cret-value-xyz", "backup key")
    done = run_command("backup", ["sh", "-c", "echo key=s3cret-value-xyz; echo boom >&2; exit 3"],
                       10, known)
    assert done.exit_code == 3 and not done.succeeded
    assert "s3cret-value-xyz" not in done.stdout and "[REDACTED backup key" in done.stdout
    assert done.describe() == "backup exited 3: boom"
    slow = run_command("prune_backups", ["sleep", "5"], 0.2, known)
    assert slow.exit_code is None and "did not finish within 0.2 s" in slow.describe()
    missing = run_command("backup", ["/nonexistent/tool"], 1, known)
    assert missing.exit_code is None and "cannot start /nonexistent/tool" in missing.error


class _FakeApi:
    """Just enough of VotrizApi for CanarySession, failing at a chosen step."""

    profile = None

    def __init__(self, fail_at: str = "", log: list[str] | None = None) -> None:
        self.fail_at = fail_at
        self.token: str | None = None
        self.log = log if log is not None else []

    def _step(self, name: str, body: object) -> object:
        from harness.outcomes import ProbeError
        from harness.probes.api import ApiResponse

        self.log.append(name)
        if name == self.fail_at:
            raise ProbeError(f"{name}: expected HTTP 201, got 500")
        return ApiResponse(200, body, {})

    def signup(self, email: str, password: str) -> object:
        return self._step("signup", {"id": 41})

    def login(self, email: str, password: str) -> str:
        self._step("login", {})
        self.token = "session-token-abcdef"
        return self.token

    def mfa_setup(self) -> object:
        return self._step("mfa_setup", {"totp_secret": "JBSWY3DPEHPK3PXP",
                                         "backup_codes": [f"code{i}-xxxxx" for i in range(10)]})

    def mfa_status(self) -> object:
        return self._step("mfa_status", {"enabled": True})

    def create_brand(self, name: str, industry: str) -> int:
        self._step("create_brand", {})
        return 7

    def create_channel(self, brand_id: int, platform: str, access: str, refresh: str) -> int:
        self._step(f"channel {platform}", {})
        return 100 + len(self.log)

    def request_recovery(self, email: str) -> object:
        return self._step("request_recovery", {"status": "accepted"})

    def request(self, method: str, path: str, json: object = None, **kw: object) -> object:
        return self._step(f"{method} {path}", {})

    def close(self) -> None:
        self.log.append("close")


class _FakeMail:
    def __init__(self) -> None:
        self.reads = 0

    def mails_to(self, address: str) -> list[dict[str, object]]:
        # One more mail at each read: the request's mail "arrives" between two reads.
        self.reads += 1
        return [{"seq": i, "subject": "Recover", "text": "https://h/recover?token=tok-123456789"}
                for i in range(self.reads)]

    def reconnect(self) -> None:
        pass


@pytest.mark.parametrize("fail_at", ["mfa_setup", "channel tiktok", "request_recovery"])
def test_canary_is_removed_even_when_planting_fails(fail_at: str) -> None:
    from harness.canaries import CanarySession
    from harness.outcomes import ProbeError

    log: list[str] = []
    known = KnownSecrets()
    session = CanarySession(_FakeApi(fail_at, log), _FakeMail(), known,  # type: ignore[arg-type]
                            api_factory=lambda: _FakeApi(fail_at, log))  # type: ignore[arg-type,return-value]
    with pytest.raises(ProbeError), session:
        pass
    assert log[-1] == "DELETE /account"
    assert session.canary.removed and session.canary.cleanup_note == "DELETE /account answered 200"
    assert b"session-token-abcdef" in dict(known.items())


def test_canary_planted_and_registered_then_removed() -> None:
    from harness.canaries import PLATFORMS, CanarySession

    log: list[str] = []
    known = KnownSecrets()
    session = CanarySession(_FakeApi("", log), _FakeMail(), known,  # type: ignore[arg-type]
                            api_factory=lambda: _FakeApi("", log))  # type: ignore[arg-type,return-value]
    with session as canary:
        assert canary.email == f"canary+{canary.run_id}@audit.invalid"
        assert len(canary.backup_codes) == 10 and len(canary.channels) == len(PLATFORMS)
        assert canary.recovery is not None and canary.recovery.token == "tok-123456789"
        assert "DELETE /account" not in log
    labels = {label for _, label in known.items()}
    assert {"canary password", "canary e-mail", "canary recovery token", "canary TOTP secret",
            "canary tiktok access token", "canary backup code 10"} <= labels
    assert log[-1] == "DELETE /account" and canary.removed


def test_token_failures_are_named_by_platform() -> None:
    good = encrypt_fernet_token(b"t", KEY, now=1_000_000)
    tally = at_rest.FernetTally([KEY], now=1_000_000, max_clock_skew_s=300,
                                duplicates=DuplicateCounter(),
                                parts=(*at_rest.PLATFORMS, "other"), part_of=str)
    rows = [(1, p, good) for p in at_rest.PLATFORMS] + [(2, "tiktok", "canary.at.tiktok.x")]
    tally.add(rows, 2, 1)
    merged = tally.scan("channels.access_token_enc")
    assert (merged.rows, merged.valid) == (6, 5)
    assert merged.by_platform["tiktok"] == {"rows": 2, "valid": 1}
    assert merged.examples == ("row 2: not_base64 (tiktok)",)
    verdict = at_rest.tokens_fernet_verdict(_tokens(columns=(merged,)))
    assert verdict.outcome is Outcome.FAIL
    assert "by platform: tiktok 1 of 2" in verdict.message
