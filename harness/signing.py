"""The keys that seal an evidence bundle: a PEM key file, a key in a PKCS#11 token, or a throwaway key.

``--signing-key`` takes either a path to an unencrypted PEM Ed25519 or ECDSA P-256
private key (``openssl genpkey -algorithm ed25519``, ``openssl genpkey -algorithm EC
-pkeyopt ec_paramgen_curve:P-256``) or an RFC 7512 ``pkcs11:`` URI naming a
private key in the auditor's own token, e.g.::

    pkcs11:token=auditor;object=bundle-signing;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/auditor.pin

The token signs (``CKM_EDDSA`` for an Ed25519 key, ``CKM_ECDSA`` over SHA-256 for a
P-256 key): the private key never leaves it. Every call into the PKCS#11 module runs
in a child process killed at the policy's request deadline, as the HSM probe's looks do:
a token that accepts and never answers ends in one line, not a hung run. The public key is read from the
token's public key object of the same label (or id), so the bundle can ship it.
The token is the auditor's, never the audited system's: the URI is the
operator's, and nothing here reads the target profile.

Without a key, :func:`throwaway_signer` makes a key for this bundle only; a
verifier never trusts it by default (:mod:`harness.report.seal`).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from harness.safe_files import Cap, FileRefused, read_bytes, read_secret_line

Algorithm = Literal["ed25519", "ecdsa-p256-sha256"]
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
#: The PKCS#11 module used when a ``pkcs11:`` URI names none (p11-kit's proxy reaches every
#: module registered on the machine).
DEFAULT_MODULE = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"


class SigningError(Exception):
    """The signing key cannot be used: unreadable, wrong type, token or object missing (one line)."""


class Signer(Protocol):
    """What seals a bundle.

    Attributes:
        algorithm: ``ed25519`` or ``ecdsa-p256-sha256``.
        kind: ``file``, ``pkcs11`` or ``throwaway``.
        public_key: the key a verifier checks the signature with.
        source: where the key is (a path or the URI without its PIN), for messages.
    """

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def kind(self) -> str: ...

    @property
    def public_key(self) -> PublicKey: ...

    @property
    def source(self) -> str: ...

    def sign(self, data: bytes) -> bytes:
        """The signature over ``data`` (raw 64 bytes for Ed25519, DER for ECDSA)."""
        ...


def public_key_pem(key: PublicKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of ``key`` (what ``openssl pkeyutl -pubin`` reads)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(key: PublicKey) -> str:
    """``sha256:<hex>`` of the DER SubjectPublicKeyInfo: the same for a key file and its PEM copy
    (``openssl pkey -pubin -in KEY.pem -outform DER | sha256sum``)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def algorithm_of(key: object) -> Algorithm:
    """The signature algorithm of a public key.

    Raises:
        SigningError: neither Ed25519 nor ECDSA P-256.
    """
    if isinstance(key, Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256-sha256"
    raise SigningError(f"the key must be Ed25519 or ECDSA P-256, not {type(key).__name__}")


@dataclass(frozen=True)
class _SoftwareSigner:
    private: Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    kind: str
    source: str
    algorithm: Algorithm = field(init=False)
    public_key: PublicKey = field(init=False)

    def __post_init__(self) -> None:
        public = self.private.public_key()
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "algorithm", algorithm_of(public))

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, Ed25519PrivateKey):
            return self.private.sign(data)
        return self.private.sign(data, ec.ECDSA(hashes.SHA256()))  # DER, as the token's signature


def throwaway_signer() -> Signer:
    """A new Ed25519 key for one bundle; it shows that nothing changed since signing, not who signed."""
    return _SoftwareSigner(Ed25519PrivateKey.generate(), "throwaway", "a throwaway key")


def file_signer(path: Path) -> Signer:
    """An Ed25519 or ECDSA P-256 private key from an unencrypted PEM file.

    Raises:
        SigningError: unreadable, not PEM, encrypted, or another algorithm.
    """
    try:
        key = serialization.load_pem_private_key(read_bytes(path, "signing key", Cap.KEY), password=None)
    except FileRefused as exc:
        raise SigningError(f"{path}: cannot read the signing key: {exc.reason}") from None
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1)):
        curve = f" on {key.curve.name}" if isinstance(key, ec.EllipticCurvePrivateKey) else ""
        raise SigningError(f"{path}: the signing key must be Ed25519 or ECDSA P-256, "
                           f"not {type(key).__name__}{curve}")
    return _SoftwareSigner(key, "file", str(path))


def load_public_key(data: bytes, where: str) -> PublicKey:
    """An Ed25519 or ECDSA P-256 public key from PEM bytes.

    Raises:
        SigningError: not a PEM public key, or another algorithm.
    """
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{where}: not a PEM public key ({exc})") from None
    algorithm_of(key)
    assert isinstance(key, Ed25519PublicKey | ec.EllipticCurvePublicKey)
    return key


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI this tool uses.

    Attributes:
        token: the token label (``token=``).
        object: the key's label (``object=``), or None.
        id: the key's CKA_ID (``id=``, percent-encoded bytes), or None.
        module: the PKCS#11 module (``module-path=``), else :data:`DEFAULT_MODULE`.
        pin_source: a file whose first line is the user PIN (``pin-source=file:…``).
        pin_value: the PIN itself (``pin-value=``; prefer ``pin-source``).
    """

    token: str
    object: str | None
    id: bytes | None
    module: str
    pin_source: Path | None
    pin_value: str | None = field(repr=False)

    @property
    def redacted(self) -> str:
        """The URI as messages show it: token and object, never the PIN."""
        what = f"object={self.object}" if self.object else f"id={(self.id or b'').hex()}"
        return f"pkcs11:token={self.token};{what} (module {self.module})"


def is_pkcs11_uri(value: str | Path) -> bool:
    """Whether ``--signing-key`` names a token key rather than a file."""
    return str(value).startswith("pkcs11:")


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse a ``pkcs11:`` URI (path attributes ``;``-separated, query attributes ``&``-separated).

    Raises:
        SigningError: not a pkcs11 URI, no token, no object or id, or ``type`` other than private.
    """
    if not is_pkcs11_uri(uri):
        raise SigningError("not a pkcs11: URI")
    path, _, query = uri[len("pkcs11:"):].partition("?")
    attrs: dict[str, str] = {}
    for part in [*path.split(";"), *query.split("&")]:
        if part:
            name, sep, value = part.partition("=")
            if not sep:
                raise SigningError(f"pkcs11 URI: attribute {name!r} has no value")
            attrs[name.strip().lower()] = value
    if attrs.get("type", "private") != "private":
        raise SigningError("pkcs11 URI: type must be private (the signing key)")
    token = unquote(attrs.get("token", ""))
    if not token:
        raise SigningError("pkcs11 URI: no token= (the auditor's signing token's label)")
    label = unquote(attrs["object"]) if "object" in attrs else None
    key_id = bytes(unquote(attrs["id"]), "latin-1") if "id" in attrs else None
    if label is None and key_id is None:
        raise SigningError("pkcs11 URI: names no key (object= or id=)")
    source = unquote(attrs.get("pin-source", ""))
    if source and not source.startswith(("file:", "/")):
        raise SigningError("pkcs11 URI: pin-source must be a file (file:/path)")
    return Pkcs11Uri(token=token, object=label, id=key_id,
                     module=unquote(attrs.get("module-path", DEFAULT_MODULE)),
                     pin_source=Path(source.removeprefix("file:")) if source else None,
                     pin_value=unquote(attrs["pin-value"]) if "pin-value" in attrs else None)


# --- the token, reached only from a child process killed at its deadline ---------------------------

#: The environment that tells a PKCS#11 module where its token is (p11-kit's server address,
#: SoftHSM's configuration): handed to each child, which may have been forked from a server
#: process started before the caller set it.
_TOKEN_ENV_PREFIXES = ("P11_KIT_", "SOFTHSM2_")
# Forked from a server process, as the HSM probe's children are: the harness's threads are
# never forked, and a module that blocks for ever (a token that accepts and never answers)
# blocks a process that is killed, not the run.
_CHILDREN = multiprocessing.get_context("forkserver")


def default_token_deadline() -> tuple[float, str]:
    """The policy's default request deadline (seconds, key): one token call, as an HSM look."""
    from harness.policy import TimeoutsPolicy

    return TimeoutsPolicy().request_s, "timeouts.request_s"


def _token_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name.startswith(_TOKEN_ENV_PREFIXES)}


def _in_token_child(function: Callable[..., Any], args: tuple[Any, ...], uri: Pkcs11Uri,
                    deadline: tuple[float, str], what: str) -> Any:
    """``function(env, *args)`` in a forked child, killed if it has not answered by ``deadline``.

    Raises:
        SigningError: the token refused, the child failed, or no answer in time (one line,
            naming the token, never the PIN).
    """
    # Imported here: ``verify`` reads this module and never needs a child (nor pydantic).
    from harness.child_calls import ChildWords, answer_from_child
    from harness.outcomes import ProbeError

    seconds, key = deadline
    try:
        return answer_from_child(_CHILDREN, function, (_token_env(), *args), seconds, ChildWords(
            process_name="votriz-audit-signing",
            cannot_start=f"{uri.redacted}: cannot start the process that {what}",
            too_slow=f"{uri.redacted}: the token did not answer within the policy's {seconds:g} s ({key}) "
                     f"while the harness {what}",
            ended=f"{uri.redacted}: the process that {what} ended without an answer",
            crashed=f"{uri.redacted}: {{kind}} while the harness {what}"))
    except ProbeError as exc:
        raise SigningError(str(exc)) from None


def _key_here(env: dict[str, str], uri: Pkcs11Uri, pin: str, probe: bytes) -> tuple[bytes, bytes]:
    """In the child: the token's public key (DER SubjectPublicKeyInfo) and a signature over ``probe``."""
    import pkcs11

    from harness.outcomes import ProbeError

    os.environ.update(env)
    try:
        with _session(uri, pin) as session:
            public_key = _token_public_key(_find(session, uri, pkcs11.ObjectClass.PUBLIC_KEY))
            algorithm = algorithm_of(public_key)
            signature = _sign_in(session, uri, algorithm, probe)
    except SigningError as exc:
        raise ProbeError(str(exc)) from None
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo), signature


def _sign_here(env: dict[str, str], uri: Pkcs11Uri, pin: str, algorithm: Algorithm, data: bytes) -> bytes:
    """In the child: the token's signature over ``data``."""
    from harness.outcomes import ProbeError

    os.environ.update(env)
    try:
        with _session(uri, pin) as session:
            return _sign_in(session, uri, algorithm, data)
    except SigningError as exc:
        raise ProbeError(str(exc)) from None


def _sign_in(session: Any, uri: Pkcs11Uri, algorithm: Algorithm, data: bytes) -> bytes:
    import pkcs11

    private = _find(session, uri, pkcs11.ObjectClass.PRIVATE_KEY)
    if algorithm == "ed25519":
        return bytes(private.sign(data, mechanism=pkcs11.Mechanism.EDDSA))
    raw = bytes(private.sign(hashlib.sha256(data).digest(), mechanism=pkcs11.Mechanism.ECDSA))
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


@dataclass(frozen=True)
class _Pkcs11Signer:
    uri: Pkcs11Uri
    pin: str = field(repr=False)
    public_key: PublicKey
    algorithm: Algorithm
    deadline: tuple[float, str]
    kind: str = "pkcs11"

    @property
    def source(self) -> str:
        return self.uri.redacted

    def sign(self, data: bytes) -> bytes:
        """The token's signature, made in a child killed at the deadline.

        Raises:
            SigningError: the token refused or did not answer in time.
        """
        return cast(bytes, _in_token_child(_sign_here, (self.uri, self.pin, self.algorithm, data), self.uri,
                                           self.deadline, "signed the bundle"))


def _session(uri: Pkcs11Uri, pin: str) -> Any:
    import pkcs11

    try:
        token = pkcs11.lib(uri.module).get_token(token_label=uri.token)
        return token.open(user_pin=pin)
    except pkcs11.NoSuchToken:
        raise SigningError(f"{uri.redacted}: no such token") from None
    except pkcs11.PinIncorrect:
        raise SigningError(f"{uri.redacted}: the PIN was refused") from None
    except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
        raise SigningError(f"{uri.redacted}: the token cannot be opened ({type(exc).__name__})") from None


def _find(session: Any, uri: Pkcs11Uri, object_class: Any) -> Any:
    import pkcs11

    wanted: dict[Any, Any] = {pkcs11.Attribute.CLASS: object_class}
    if uri.object is not None:
        wanted[pkcs11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        wanted[pkcs11.Attribute.ID] = uri.id
    found = list(session.get_objects(wanted))
    if len(found) != 1:
        raise SigningError(f"{uri.redacted}: {len(found)} {object_class.name.lower()} objects match, "
                           f"need exactly one")
    return found[0]


def _token_public_key(public: Any) -> PublicKey:
    import pkcs11
    from asn1crypto.core import OctetString  # python-pkcs11's own dependency

    params = bytes(public[pkcs11.Attribute.EC_PARAMS])
    point = OctetString.load(bytes(public[pkcs11.Attribute.EC_POINT])).native
    if params == bytes.fromhex("06032b6570"):  # OID 1.3.101.112, Ed25519
        return Ed25519PublicKey.from_public_bytes(point)
    if params == bytes.fromhex("06082a8648ce3d030107"):  # OID 1.2.840.10045.3.1.7, P-256
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    raise SigningError("the token's key is neither Ed25519 nor ECDSA P-256")


def pkcs11_signer(uri_text: str, deadline: tuple[float, str] | None = None) -> Signer:
    """The token key a ``pkcs11:`` URI names, checked by one signature made and verified now.

    Every call into the PKCS#11 module runs in a child process killed at ``deadline``
    (seconds, policy key; the policy's default request deadline without one): a
    module that never answers (a frozen p11-kit server) cannot hold the harness.

    Raises:
        SigningError: bad URI, unreadable PIN file, no token, wrong PIN, not exactly one key,
            or no answer by the deadline.
    """
    uri = parse_pkcs11_uri(uri_text)
    deadline = deadline or default_token_deadline()
    if uri.pin_source is not None:
        try:
            pin = read_secret_line(uri.pin_source, "signing token PIN")
        except FileRefused as exc:
            raise SigningError(str(exc)) from None
    elif uri.pin_value is not None:
        pin = uri.pin_value
    else:
        raise SigningError(f"{uri.redacted}: no PIN (pin-source=file:/path or pin-value=)")
    probe = b"votriz-audit signing key check"
    der, signature = _in_token_child(_key_here, (uri, pin, probe), uri, deadline, "opened the signing key")
    public_key = serialization.load_der_public_key(der)
    assert isinstance(public_key, Ed25519PublicKey | ec.EllipticCurvePublicKey)
    try:
        verify_signature(public_key, signature, probe)
    except InvalidSignature:
        raise SigningError(f"{uri.redacted}: the token's signature does not verify under its public key"
                           ) from None
    return _Pkcs11Signer(uri, pin, public_key, algorithm_of(public_key), deadline)


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> None:
    """Check ``signature`` over ``data``.

    Raises:
        cryptography.exceptions.InvalidSignature: it does not hold.
    """
    if isinstance(key, Ed25519PublicKey):
        key.verify(signature, data)
    else:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def open_signer(signing_key: str | Path | None, deadline: tuple[float, str] | None = None) -> Signer:
    """The signer ``--signing-key`` names: a PEM file, a ``pkcs11:`` URI, or (None) a throwaway key.

    ``deadline`` (seconds, policy key) bounds each call into a token.

    Raises:
        SigningError: the key cannot be used.
    """
    if signing_key is None:
        return throwaway_signer()
    if is_pkcs11_uri(signing_key):
        return pkcs11_signer(str(signing_key), deadline)
    return file_signer(Path(signing_key))
