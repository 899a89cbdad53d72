"""The signed bundle: ``manifest.json`` names every file of a report directory with its size
and SHA-256, and an Ed25519 signature over the manifest seals it.

Signing refuses, with a typed error, a directory whose run found one of its
secrets in its own output (``LEAKS.txt``), or in which a scan with the run's
:class:`~harness.redaction.KnownSecrets` finds one now: such a bundle must not
leave the machine, and a signature would only make it look trustworthy.

Keys: the signing key is an Ed25519 private key in a PEM file (unencrypted
PKCS#8, e.g. ``openssl genpkey -algorithm ed25519``). Without one, a
**throwaway** key is generated for this bundle and its public key written as
``manifest.THROWAWAY-public-key.pem``: it proves that nothing changed since
signing, not who signed, since anyone who alters the bundle can re-sign it with
a new throwaway key. A verifier who wants the latter passes the public key it
trusts (``verify(..., public_key=PATH)``).

Files: ``manifest.json``, ``manifest.json.sig`` (the base64 signature over
the manifest's exact bytes) and the public key file are the seal; every
other regular file under the directory is listed, the report, exports and
evidence alike.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from harness import __version__
from harness.leaks import scan_for_leaks
from harness.redaction import KnownSecrets
from harness.report.layout import (
    LEAKS_TXT,
    MANIFEST_JSON,
    PUBLIC_KEY_FILE,
    RESULTS_JSON,
    SIGNATURE_FILE,
    THROWAWAY_PUBLIC_KEY_FILE,
    load_results,
)

MANIFEST_SCHEMA_VERSION = 1
SEAL_FILES = (MANIFEST_JSON, SIGNATURE_FILE, PUBLIC_KEY_FILE, THROWAWAY_PUBLIC_KEY_FILE)


class BundleError(Exception):
    """The bundle cannot be signed: bad key file, unreadable directory (one line, safe to print)."""


class BundleRefused(BundleError):
    """Signing was refused because the directory holds, or may hold, a secret.

    Attributes:
        places: where (file and offset, with the secret's label, never its value).
    """

    def __init__(self, message: str, places: list[str]) -> None:
        super().__init__(message)
        self.places = places


class ManifestEntry(BaseModel):
    """One file of the bundle.

    Attributes:
        path: relative to the report directory, with ``/`` separators.
        size: bytes.
        sha256: hex digest of the content.
    """

    model_config = ConfigDict(frozen=True)

    path: str
    size: int
    sha256: str


class SigningKeyInfo(BaseModel):
    """Which key signed the manifest.

    Attributes:
        algorithm: always ``Ed25519``.
        public_key_sha256: SHA-256 of the raw 32-byte public key.
        throwaway: True when the key was generated for this bundle only.
        public_key_file: the public key written next to the manifest.
        note: what the signature does and does not prove.
    """

    model_config = ConfigDict(frozen=True)

    algorithm: str = "Ed25519"
    public_key_sha256: str
    throwaway: bool
    public_key_file: str
    note: str


class Manifest(BaseModel):
    """manifest.json: every file of a report directory, for the signature to cover.

    Attributes:
        schema_version: version of this format.
        tool, tool_version: who wrote it.
        run_id: the run whose report this is (from results.json; ``""`` if none).
        created_at: when it was signed (UTC).
        files: every file except the seal itself, sorted by path.
        signing_key: the key that signed it.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = MANIFEST_SCHEMA_VERSION
    tool: str = "votriz-audit"
    tool_version: str = __version__
    run_id: str
    created_at: dt.datetime
    files: tuple[ManifestEntry, ...]
    signing_key: SigningKeyInfo


def manifest_schema() -> dict[str, Any]:
    """The JSON schema of manifest.json, generated from the models."""
    schema = Manifest.model_json_schema()
    schema["$id"] = f"https://votriz-audit/schemas/manifest-v{MANIFEST_SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@dataclass(frozen=True)
class SignedBundle:
    """What :func:`sign_bundle` wrote.

    Attributes:
        manifest: the manifest signed.
        manifest_path, signature_path, public_key_path: the files of the seal.
        throwaway: True when a throwaway key signed it.
    """

    manifest: Manifest
    manifest_path: Path
    signature_path: Path
    public_key_path: Path
    throwaway: bool


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(report_dir: Path) -> dict[str, Path]:
    """Every file of the bundle (the seal excluded), by relative path."""
    files = {}
    for path in sorted(report_dir.rglob("*")):
        relative = path.relative_to(report_dir).as_posix()
        if relative in SEAL_FILES or not (path.is_file() or path.is_symlink()):
            continue
        files[relative] = path
    return files


def _entries(report_dir: Path) -> tuple[ManifestEntry, ...]:
    entries = []
    for relative, path in bundle_files(report_dir).items():
        if path.is_symlink():
            raise BundleError(f"{relative}: is a symbolic link; a bundle holds regular files only")
        entries.append(ManifestEntry(path=relative, size=path.stat().st_size, sha256=_sha256(path)))
    return tuple(entries)


def public_key_fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PEM file.

    Raises:
        BundleError: unreadable, not PEM, encrypted, or not Ed25519.
    """
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the signing key: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: the signing key must be Ed25519, not {type(key).__name__}")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file.

    Raises:
        BundleError: unreadable, not PEM, or not Ed25519.
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the public key: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: the public key must be Ed25519, not {type(key).__name__}")
    return key


def check_no_secrets(report_dir: Path, known_secrets: KnownSecrets | None) -> None:
    """Refuse a directory whose run reported a leak, or where a known secret appears now.

    Raises:
        BundleRefused: naming the places (labels and offsets only).
    """
    leaks = report_dir / LEAKS_TXT
    if leaks.exists():
        places = [line for line in leaks.read_text(encoding="utf-8", errors="replace").splitlines() if line]
        raise BundleRefused(f"{report_dir}: the run found its own secrets in its output ({LEAKS_TXT}: "
                            f"{len(places)} place(s)); this bundle must not be signed or distributed", places)
    if known_secrets is not None and len(known_secrets):
        places = scan_for_leaks(report_dir, known_secrets)
        if places:
            raise BundleRefused(f"{report_dir}: {len(places)} known secret(s) found in the output "
                                f"(first: {places[0]}); refusing to sign", places)


_THROWAWAY_NOTE = ("THROWAWAY KEY generated for this bundle only: the signature shows that no file changed "
                   "since signing, not who signed. Anyone can re-sign an altered bundle with a new throwaway "
                   "key; sign with --key and verify with --public-key for that.")
_SUPPLIED_NOTE = ("Signed with the operator's key. Verify with a public key you obtained independently "
                  "(--public-key), not only with the copy next to the manifest.")


def sign_bundle(report_dir: Path, *, known_secrets: KnownSecrets | None = None, key_path: Path | None = None,
                now: dt.datetime | None = None) -> SignedBundle:
    """Write and sign ``manifest.json`` for every file of ``report_dir``.

    Raises:
        BundleRefused: ``LEAKS.txt`` exists, or a known secret appears in a file.
        BundleError: the key cannot be used, or the directory holds a symbolic link.
    """
    if not report_dir.is_dir():
        raise BundleError(f"{report_dir}: not a directory")
    check_no_secrets(report_dir, known_secrets)
    throwaway = key_path is None
    key = Ed25519PrivateKey.generate() if key_path is None else load_signing_key(key_path)
    public = key.public_key()
    for stale in SEAL_FILES:
        (report_dir / stale).unlink(missing_ok=True)
    public_name = THROWAWAY_PUBLIC_KEY_FILE if throwaway else PUBLIC_KEY_FILE
    public_path = report_dir / public_name
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_path.write_bytes(pem)
    run_id = load_results(report_dir).run_id if (report_dir / RESULTS_JSON).is_file() else ""
    manifest = Manifest(
        run_id=run_id, created_at=now or dt.datetime.now(dt.UTC), files=_entries(report_dir),
        signing_key=SigningKeyInfo(public_key_sha256=public_key_fingerprint(public), throwaway=throwaway,
                                   public_key_file=public_name,
                                   note=_THROWAWAY_NOTE if throwaway else _SUPPLIED_NOTE))
    body = (manifest.model_dump_json(indent=2) + "\n").encode()
    manifest_path = report_dir / MANIFEST_JSON
    manifest_path.write_bytes(body)
    signature_path = report_dir / SIGNATURE_FILE
    signature_path.write_bytes(base64.b64encode(key.sign(body)) + b"\n")
    return SignedBundle(manifest, manifest_path, signature_path, public_path, throwaway)


class SignatureStatus(enum.StrEnum):
    """Whether the manifest's signature holds.

    Attributes:
        VALID: the signature verifies with the key used.
        INVALID: it does not (the manifest, the signature or the key changed).
        MISSING: there is no signature file.
        NO_KEY: no usable public key (none given, none next to the manifest, or unreadable).
    """

    VALID = "valid"
    INVALID = "invalid"
    MISSING = "missing"
    NO_KEY = "no usable public key"


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on a bundle.

    Attributes:
        report_dir: the directory verified.
        run_id: the run named by the manifest.
        manifest_error: why the manifest could not be read (then nothing else was compared).
        changed: listed files whose size or SHA-256 differs.
        added: files present but not listed.
        missing: listed files that are gone.
        signature: whether the signature holds.
        key_source: which public key was used (``supplied FILE``, ``bundled FILE``).
        key_trusted: True when the caller supplied the key; a bundled key only shows self-consistency.
        throwaway: the manifest says a throwaway key signed it.
        key_problem: why no key could be used, if so.
    """

    report_dir: Path
    run_id: str = ""
    manifest_error: str | None = None
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    signature: SignatureStatus = SignatureStatus.MISSING
    key_source: str = ""
    key_trusted: bool = False
    throwaway: bool = False
    key_problem: str = ""

    @property
    def ok(self) -> bool:
        """The manifest was read, every file matches it and the signature holds."""
        return (self.manifest_error is None and not (self.changed or self.added or self.missing)
                and self.signature is SignatureStatus.VALID)

    def text(self) -> str:
        """A human account, one line per problem."""
        lines = [f"votriz-audit verify {self.report_dir}: {'OK' if self.ok else 'FAILED'}"
                 + (f" (run {self.run_id})" if self.run_id else "")]
        if self.manifest_error:
            lines.append(f"  manifest: {self.manifest_error}")
        lines += [f"  changed: {path}" for path in self.changed]
        lines += [f"  added:   {path}" for path in self.added]
        lines += [f"  missing: {path}" for path in self.missing]
        if self.manifest_error is None:
            lines.append(f"  signature: {self.signature.value}"
                         + (f" with the {self.key_source} public key" if self.key_source else "")
                         + (f" ({self.key_problem})" if self.key_problem else ""))
            if self.signature is SignatureStatus.VALID and not self.key_trusted:
                lines.append("  note: verified with the key shipped in the bundle"
                             + (" (a THROWAWAY key)" if self.throwaway else "")
                             + ": this shows the bundle is self-consistent, not who signed it; "
                               "pass --public-key with a key you trust.")
        return "\n".join(lines) + "\n"


def verify(report_dir: Path, public_key: Path | Ed25519PublicKey | None = None) -> VerifyReport:
    """Compare every file with the manifest and check the manifest's signature.

    Never raises for a damaged bundle: every problem is named in the report.
    """
    manifest_path = report_dir / MANIFEST_JSON
    try:
        body = manifest_path.read_bytes()
        manifest = Manifest.model_validate_json(body)
    except OSError as exc:
        return VerifyReport(report_dir, manifest_error=f"cannot read {MANIFEST_JSON}: {exc.strerror}")
    except ValidationError as exc:
        return VerifyReport(report_dir, manifest_error=f"{MANIFEST_JSON} is not a valid manifest "
                                                       f"({exc.error_count()} error(s))")
    listed = {entry.path: entry for entry in manifest.files}
    present = bundle_files(report_dir)
    changed = []
    for path, entry in listed.items():
        file = present.get(path)
        if file is None:
            continue
        if file.is_symlink() or file.stat().st_size != entry.size or _sha256(file) != entry.sha256:
            changed.append(path)
    missing = sorted(set(listed) - set(present))
    added = sorted(set(present) - set(listed))
    signature, source, trusted, problem = _check_signature(report_dir, body, manifest, public_key)
    return VerifyReport(report_dir, run_id=manifest.run_id, changed=tuple(sorted(changed)),
                        added=tuple(added), missing=tuple(missing), signature=signature,
                        key_source=source, key_trusted=trusted, throwaway=manifest.signing_key.throwaway,
                        key_problem=problem)


def _check_signature(report_dir: Path, body: bytes, manifest: Manifest,
                     public_key: Path | Ed25519PublicKey | None) -> tuple[SignatureStatus, str, bool, str]:
    try:
        raw = (report_dir / SIGNATURE_FILE).read_bytes()
    except OSError:
        return SignatureStatus.MISSING, "", False, f"no {SIGNATURE_FILE}"
    try:
        signature = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        return SignatureStatus.INVALID, "", False, f"{SIGNATURE_FILE} is not base64"
    trusted = public_key is not None
    try:
        if isinstance(public_key, Ed25519PublicKey):
            key, source = public_key, "supplied"
        elif public_key is not None:
            key, source = load_public_key(public_key), f"supplied {public_key}"
        else:
            # Only the file the manifest names: a swapped-in key file of another name is ignored.
            name = manifest.signing_key.public_key_file
            if name not in (PUBLIC_KEY_FILE, THROWAWAY_PUBLIC_KEY_FILE):
                return (SignatureStatus.NO_KEY, "", False,
                        f"the manifest names an unexpected key file {name!r}")
            key, source = load_public_key(report_dir / name), f"bundled {name}"
    except BundleError as exc:
        return SignatureStatus.NO_KEY, "", trusted, str(exc)
    try:
        key.verify(signature, body)
    except InvalidSignature:
        problem = ("the key is not the one that signed" if public_key_fingerprint(key)
                   != manifest.signing_key.public_key_sha256 else "")
        return SignatureStatus.INVALID, source, trusted, problem
    return SignatureStatus.VALID, source, trusted, ""
