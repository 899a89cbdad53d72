"""The seal of an evidence bundle: an in-toto Statement v1 in a DSSE envelope, ``audit.intoto.jsonl``.

The Statement's subjects are every file of the bundle with its SHA-256; its
predicate (:data:`PREDICATE_TYPE`) carries what a reviewer needs at a glance:
each promise's outcome, the gate, tool version and commit, target, policy
digest, start and end time, and the signer. The envelope is written as one line
of JSON (the convention of SLSA provenance ``.intoto.jsonl`` files); DSSE's
pre-authentication encoding and the envelope's JSON form come from
securesystemslib (:class:`securesystemslib.dsse.Envelope`).

Beside it: the signer's public key (``audit.public-key.pem``, or
``audit.THROWAWAY-public-key.pem`` for a key made for this bundle only),
``files.sha256`` (the same list in ``sha256sum -c`` form, itself a subject) and
``VERIFY.md``, a recipe that checks all of it with openssl and sha256sum alone.

:func:`verify` trusts nothing by default: a bundle is *verified* only when its
signature holds under a key the caller names; intact but signed by another key
(a throwaway key, a forger's key) is *intact, signer not trusted*; any changed,
added or missing file, or a signature that holds under no key, is *broken*.

A sealed directory is never changed: :func:`seal` refuses one, and
:func:`copy_unsealed` makes the new directory to re-render or re-sign.
"""

from __future__ import annotations

import binascii
import datetime as dt
import enum
import hashlib
import json
import shutil
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature  # type: ignore[attr-defined]

from harness.safe_files import Cap, FileRefused, read_bytes
from harness.signing import (
    PublicKey,
    Signer,
    SigningError,
    key_fingerprint,
    load_public_key,
    public_key_pem,
    verify_signature,
)

SEAL_FILE = "audit.intoto.jsonl"
PUBLIC_KEY_FILE = "audit.public-key.pem"
THROWAWAY_PUBLIC_KEY_FILE = "audit.THROWAWAY-public-key.pem"
FILE_LIST = "files.sha256"
VERIFY_MD = "VERIFY.md"
#: The seal of earlier versions; a directory holding it is sealed too (and never re-sealed).
LEGACY_SEAL_FILES = ("manifest.json.sig",)
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://votriz-audit.invalid/attestation/audit-result/v1"
_KEY_FILES = (PUBLIC_KEY_FILE, THROWAWAY_PUBLIC_KEY_FILE)


class SealError(Exception):
    """The directory cannot be sealed: already sealed, a symbolic link in it, no results (one line)."""


def is_sealed(report_dir: Path) -> bool:
    """Whether ``report_dir`` carries a seal (this format's or an earlier one's)."""
    return any((report_dir / name).exists() for name in (SEAL_FILE, *LEGACY_SEAL_FILES))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(report_dir: Path, seal_names: Sequence[str] = (SEAL_FILE, *_KEY_FILES)) -> dict[str, Path]:
    """Every file of the bundle but the seal, by relative ``/`` path, sorted (symbolic links included)."""
    files = {}
    for path in sorted(report_dir.rglob("*")):
        relative = path.relative_to(report_dir).as_posix()
        if relative not in seal_names and (path.is_symlink() or not path.is_dir()):
            files[relative] = path
    return files


@dataclass(frozen=True)
class SignerFacts:
    """Who sealed a bundle, as its predicate says.

    Attributes:
        kind: ``file``, ``pkcs11`` or ``throwaway``.
        algorithm: ``ed25519`` or ``ecdsa-p256-sha256``.
        fingerprint: ``sha256:`` of the DER public key (:func:`harness.signing.key_fingerprint`).
        public_key_file: the key's PEM copy in the bundle.
    """

    kind: str
    algorithm: str
    fingerprint: str
    public_key_file: str


def signer_facts(signer: Signer) -> SignerFacts:
    """What the predicate and VERIFY.md say about ``signer``."""
    return SignerFacts(kind=signer.kind, algorithm=signer.algorithm,
                       fingerprint=key_fingerprint(signer.public_key),
                       public_key_file=THROWAWAY_PUBLIC_KEY_FILE if signer.kind == "throwaway"
                       else PUBLIC_KEY_FILE)


def verify_md(facts: SignerFacts) -> str:
    """VERIFY.md for a bundle sealed by ``facts``' key: the openssl + sha256sum recipe."""
    template = string.Template(resources.files("harness.report").joinpath("verify_recipe.md")
                               .read_text(encoding="utf-8"))
    if facts.algorithm == "ed25519":
        openssl = ('openssl pkeyutl -verify -pubin -inkey "$TRUSTED_KEY" -rawin '
                   '-in "$work/pae.bin" -sigfile "$work/sig.bin"')
    else:
        openssl = 'openssl dgst -sha256 -verify "$TRUSTED_KEY" -signature "$work/sig.bin" "$work/pae.bin"'
    warning = ("\n**THROWAWAY KEY**: this bundle was signed by a key made for it alone. The seal shows "
               "that no file changed since signing, never who signed; `votriz-audit verify` does not "
               "trust it.\n" if facts.kind == "throwaway" else "")
    return template.substitute(seal_file=SEAL_FILE, predicate_type=PREDICATE_TYPE, signer_kind=facts.kind,
                               algorithm=facts.algorithm, fingerprint=facts.fingerprint,
                               public_key_file=facts.public_key_file, throwaway_warning=warning,
                               openssl_verify=openssl)


@dataclass(frozen=True)
class Sealed:
    """What :func:`seal` wrote.

    Attributes:
        seal_path: ``audit.intoto.jsonl``.
        public_key_path: the signer's public key in the bundle.
        signer: who sealed it.
        subjects: how many files the statement names.
    """

    seal_path: Path
    public_key_path: Path
    signer: SignerFacts
    subjects: int


def seal(report_dir: Path, signer: Signer, predicate: Mapping[str, Any], *,
         now: dt.datetime | None = None) -> Sealed:
    """Write VERIFY.md and files.sha256, then the signed statement over every file.

    ``predicate`` is the run's summary (:func:`harness.report.bundle.run_predicate`); the
    signer and the sealing time are added here.

    Raises:
        SealError: the directory is already sealed or holds a symbolic link.
        SigningError: the signer failed (a token gone, a PIN revoked).
    """
    if is_sealed(report_dir):
        raise SealError(f"{report_dir}: already sealed; a sealed directory is never changed")
    for name in _KEY_FILES:
        if (report_dir / name).exists():
            raise SealError(f"{report_dir}: holds {name} but no seal; refusing to seal a directory "
                            f"with a stray key file")
    facts = signer_facts(signer)
    (report_dir / VERIFY_MD).write_text(verify_md(facts), encoding="utf-8")
    listed = {name: path for name, path in bundle_files(report_dir).items() if name != FILE_LIST}
    links = [name for name, path in listed.items() if path.is_symlink() or not path.is_file()]
    if links:
        raise SealError(f"{links[0]}: not a regular file; a bundle holds regular files only")
    digests = {name: _sha256(path) for name, path in listed.items()}
    (report_dir / FILE_LIST).write_text("".join(f"{digest}  {name}\n" for name, digest in digests.items()),
                                        encoding="utf-8")
    digests[FILE_LIST] = _sha256(report_dir / FILE_LIST)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(digests.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {**predicate, "sealed_at": (now or dt.datetime.now(dt.UTC)).isoformat(),
                      "signer": {"kind": facts.kind, "algorithm": facts.algorithm,
                                 "key_fingerprint": facts.fingerprint,
                                 "public_key_file": facts.public_key_file}},
    }
    envelope = Envelope(json.dumps(statement, separators=(",", ":"), ensure_ascii=False).encode(),
                        PAYLOAD_TYPE, {})
    signature = signer.sign(envelope.pae())
    verify_signature(signer.public_key, signature, envelope.pae())
    envelope.signatures[facts.fingerprint] = Signature(facts.fingerprint, signature.hex())
    key_path = report_dir / facts.public_key_file
    key_path.write_bytes(public_key_pem(signer.public_key))
    seal_path = report_dir / SEAL_FILE
    seal_path.write_text(json.dumps(envelope.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")
    return Sealed(seal_path, key_path, facts, len(digests))


def copy_unsealed(sealed_dir: Path, new_dir: Path) -> Path:
    """Copy a sealed bundle's files, without its seal, into ``new_dir`` (which must not exist):
    the place to re-render or re-sign, leaving the sealed one as it was.

    Raises:
        SealError: ``new_dir`` exists.
    """
    if new_dir.exists():
        raise SealError(f"{new_dir}: exists; evidence is never overwritten")
    seal_names = {SEAL_FILE, *_KEY_FILES, FILE_LIST, VERIFY_MD, *LEGACY_SEAL_FILES, "manifest.json",
                  "manifest.public-key.pem", "manifest.THROWAWAY-public-key.pem"}
    new_dir.mkdir(parents=True)
    for name, path in bundle_files(sealed_dir, ()).items():
        if name in seal_names or path.is_symlink():
            continue
        target = new_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return new_dir


class SealStatus(enum.StrEnum):
    """The verdict on a bundle.

    Attributes:
        VERIFIED: every file as signed, and the signature holds under a key the verifier named.
        UNTRUSTED: every file as signed, signed by a key the verifier did not name.
        BROKEN: a file changed, was added or is missing, or the signature holds under no key.
        UNSEALED: no readable seal.
    """

    VERIFIED = "verified"
    UNTRUSTED = "intact, signer not trusted"
    BROKEN = "FAILED"
    UNSEALED = "not sealed"


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        report_dir: the directory verified.
        status: the verdict.
        problems: why it is broken or unsealed, one line each.
        changed, added, missing: files that differ from the statement's subjects.
        signer: the signer's fingerprint (of the key the signature held under), or ``""``.
        signer_kind: what the predicate says the key was (``throwaway``, ``file``, ``pkcs11``).
        trusted_by: the named key it held under, or ``""``.
        predicate: the statement's predicate (only once its signature held).
    """

    report_dir: Path
    status: SealStatus
    problems: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    signer: str = ""
    signer_kind: str = ""
    trusted_by: str = ""
    predicate: Mapping[str, Any] = field(default_factory=dict)

    def exit_code(self, allow_untrusted: bool = False) -> int:
        """0 verified (or intact and ``allow_untrusted``), 2 intact but not trusted, 1 otherwise."""
        if self.status is SealStatus.VERIFIED:
            return 0
        if self.status is SealStatus.UNTRUSTED:
            return 0 if allow_untrusted else 2
        return 1

    def text(self, allow_untrusted: bool = False) -> str:
        """A human account: the verdict first, then one line per problem."""
        run = self.predicate.get("run_id", "")
        lines = [f"votriz-audit verify {self.report_dir}: {self.status.value}"
                 + (f" (run {run})" if run else "")]
        lines += [f"  problem: {problem}" for problem in self.problems]
        lines += [f"  changed: {path}" for path in self.changed]
        lines += [f"  added:   {path}" for path in self.added]
        lines += [f"  missing: {path}" for path in self.missing]
        if self.signer:
            lines.append(f"  signer: {self.signer} ({self.signer_kind or 'unknown'} key"
                         + (f"; trusted: {self.trusted_by})" if self.trusted_by
                            else "; not a key you named)"))
        gate = self.predicate.get("gate")
        if isinstance(gate, Mapping) and self.status is not SealStatus.BROKEN:
            lines.append(f"  gate: {gate.get('result')} (exit {gate.get('exit_code')}): {gate.get('reason')}")
        if self.status is SealStatus.UNTRUSTED:
            lines.append("  NOT VERIFIED: the files are as signed, but by a key you did not name"
                         + (" (a THROWAWAY key)" if self.signer_kind == "throwaway" else "")
                         + "; anyone who altered the bundle could have re-signed it. "
                           "Pass --public-key with the auditor's key.")
            if allow_untrusted:
                lines.append("  WARNING: accepted only because of --allow-untrusted: WHO SIGNED IS UNKNOWN")
        return "\n".join(lines) + "\n"


def _read_envelope(report_dir: Path) -> tuple[Envelope, Signature] | str:
    try:
        raw = read_bytes(report_dir / SEAL_FILE, "seal", Cap.MANIFEST)
    except FileRefused as exc:
        return f"cannot read {SEAL_FILE}: {exc.reason}"
    lines = [line for line in raw.splitlines() if line.strip()]
    if len(lines) != 1:
        return f"{SEAL_FILE} holds {len(lines)} envelopes; a bundle has exactly one"
    try:
        data = json.loads(lines[0])
        if not isinstance(data, dict) or not isinstance(data.get("signatures"), list):
            raise ValueError("not a DSSE envelope")
        envelope = Envelope.from_dict(data)
    except (ValueError, KeyError, TypeError, RecursionError, binascii.Error) as exc:
        return f"{SEAL_FILE} is not a DSSE envelope ({type(exc).__name__})"
    if envelope.payload_type != PAYLOAD_TYPE:
        return f"{SEAL_FILE}: payload type {envelope.payload_type!r}, expected {PAYLOAD_TYPE}"
    if len(envelope.signatures) != 1:
        return f"{SEAL_FILE}: {len(envelope.signatures)} signatures, expected one"
    return envelope, next(iter(envelope.signatures.values()))


def _holds(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        verify_signature(key, signature, data)
    except InvalidSignature:
        return False
    return True


def _statement(payload: bytes) -> dict[str, Any] | str:
    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError):
        return "the signed payload is not JSON (or nests too deeply)"
    if (not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE
            or statement.get("predicateType") != PREDICATE_TYPE
            or not isinstance(statement.get("subject"), list)
            or not isinstance(statement.get("predicate"), dict)):
        return f"the signed payload is not an in-toto Statement v1 of {PREDICATE_TYPE}"
    return statement


def _subjects(statement: Mapping[str, Any]) -> dict[str, str] | str:
    subjects: dict[str, str] = {}
    for entry in statement["subject"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        digests = entry.get("digest") if isinstance(entry, dict) else None
        digest = digests.get("sha256") if isinstance(digests, dict) else None
        if not isinstance(name, str) or not isinstance(digest, str) or name in subjects:
            return "the statement has a malformed or repeated subject"
        subjects[name] = digest
    return subjects


def verify(report_dir: Path, trusted: Sequence[PublicKey] = ()) -> VerifyReport:
    """Check the seal's signature, then every file against the statement's subjects.

    Never raises for a damaged bundle: every problem is named in the report.
    """
    if not (report_dir / SEAL_FILE).exists():
        legacy = any((report_dir / name).exists() for name in LEGACY_SEAL_FILES)
        return VerifyReport(report_dir, SealStatus.UNSEALED, (
            f"no {SEAL_FILE}" + ("; this directory has an earlier manifest.json seal, which this version "
                                 "does not accept" if legacy else ""),))
    envelope_or_problem = _read_envelope(report_dir)
    if isinstance(envelope_or_problem, str):
        return VerifyReport(report_dir, SealStatus.BROKEN, (envelope_or_problem,))
    envelope, signature = envelope_or_problem
    pae, sig = envelope.pae(), bytes.fromhex(signature.signature)
    trusted_by = next((key_fingerprint(key) for key in trusted if _holds(key, sig, pae)), "")
    statement = _statement(envelope.payload)
    if isinstance(statement, str):
        return VerifyReport(report_dir, SealStatus.BROKEN, (statement,), trusted_by=trusted_by)
    predicate = statement["predicate"]
    claimed = predicate.get("signer") if isinstance(predicate.get("signer"), dict) else {}
    key_file = claimed.get("public_key_file")
    if key_file not in _KEY_FILES:
        return VerifyReport(report_dir, SealStatus.BROKEN, (f"the predicate names no known key file "
                                                             f"({key_file!r})",), trusted_by=trusted_by)
    problems: list[str] = []
    bundled = _bundled_key(report_dir / key_file, problems)
    signer = trusted_by
    if bundled is not None and _holds(bundled, sig, pae):
        signer = signer or key_fingerprint(bundled)
        if trusted_by and key_fingerprint(bundled) != trusted_by:
            problems.append(f"{key_file} is not the key that signed")
    elif bundled is not None and trusted_by:
        problems.append(f"{key_file} is not the key that signed")
    if not signer:
        problems.append("the signature holds under no key (neither one you named nor the bundled one)")
        return VerifyReport(report_dir, SealStatus.BROKEN, tuple(problems))
    if claimed.get("key_fingerprint") != signer:
        problems.append("the predicate names another signer than the key the signature holds under")
    subjects = _subjects(statement)
    if isinstance(subjects, str):
        return VerifyReport(report_dir, SealStatus.BROKEN, (*problems, subjects), signer=signer)
    present = bundle_files(report_dir, (SEAL_FILE, key_file))
    changed = sorted(name for name, digest in subjects.items() if name in present
                     and (present[name].is_symlink() or not present[name].is_file()
                          or _sha256(present[name]) != digest))
    added = tuple(sorted(set(present) - set(subjects)))
    missing = tuple(sorted(set(subjects) - set(present)))
    broken = bool(problems or changed or added or missing)
    status = SealStatus.BROKEN if broken else SealStatus.VERIFIED if trusted_by else SealStatus.UNTRUSTED
    return VerifyReport(report_dir, status, tuple(problems), tuple(changed), added, missing, signer=signer,
                        signer_kind=str(claimed.get("kind", "")), trusted_by=trusted_by, predicate=predicate)


def _bundled_key(path: Path, problems: list[str]) -> PublicKey | None:
    try:
        return load_public_key(read_bytes(path, "bundled public key", Cap.KEY), path.name)
    except FileRefused as exc:
        problems.append(f"cannot read {path.name}: {exc.reason}")
    except SigningError as exc:
        problems.append(str(exc))
    return None


def trusted_keys(paths: Sequence[Path]) -> list[PublicKey]:
    """The public keys a verifier names: each file holds one or more PEM public keys.

    Raises:
        SigningError: a file is unreadable or holds something else.
    """
    keys: list[PublicKey] = []
    marker = b"-----BEGIN PUBLIC KEY-----"
    for path in paths:
        try:
            data = read_bytes(path, "trusted public key", Cap.KEY)
        except FileRefused as exc:
            raise SigningError(str(exc)) from None
        blocks = [marker + block for block in data.split(marker)[1:]]
        if not blocks:
            raise SigningError(f"{path}: holds no PEM public key")
        keys += [load_public_key(block, str(path)) for block in blocks]
    return keys

