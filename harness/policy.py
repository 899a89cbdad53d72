"""The audit policy: thresholds the published promises are held to.

The default lives in ``fixtures/policy/default.toml``; a user may pass their
own. A policy that contradicts itself is refused before any check runs.

Every number is bounded when the policy is loaded: finite (``inf`` and ``nan``
are refused) and within the range its field states (every timeout at most a
day), so a value cannot overflow where it is used; the refusal is one line
naming the key and the allowed range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.bundled import bundled
from harness.tomlfile import load_toml_model

DEFAULT_POLICY_PATH = bundled("policy", "default.toml")

TlsVersion = Literal["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


class PolicyError(Exception):
    """The policy file is missing, malformed or contradicts itself."""


#: Upper bound of every timeout and time span measured in seconds: one day.
DAY_S = 86400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TlsPolicy(_Strict):
    """Attributes: allowed_versions (the only versions the edge may accept),
    min_certificate_days_left, min_rsa_bits, min_ec_bits."""

    allowed_versions: tuple[TlsVersion, ...] = ("TLSv1.3",)
    min_certificate_days_left: int = Field(14, ge=0, le=3650)
    min_rsa_bits: int = Field(2048, ge=1024, le=16384)
    min_ec_bits: int = Field(256, ge=160, le=571)


class HstsPolicy(_Strict):
    """Attributes: min_max_age_s, require_include_subdomains."""

    min_max_age_s: int = Field(31536000, ge=0, le=10 * 365 * DAY_S)
    require_include_subdomains: bool = True


class HeadersPolicy(_Strict):
    """Attributes: required (lower-case header names), frame_protection
    (alternatives: a header name, or ``header:directive``), forbid_version_banner."""

    required: tuple[str, ...] = ()
    frame_protection: tuple[str, ...] = ("x-frame-options", "content-security-policy:frame-ancestors")
    forbid_version_banner: bool = True


class BcryptPolicy(_Strict):
    """Attributes: cost (the exact work factor the page promises)."""

    cost: int = Field(12, ge=4, le=31)


class MfaPolicy(_Strict):
    """What every stored MFA backup code and recovery token is held to.

    Attributes:
        backup_code_set_size: codes the service issues to a user at once; a user
            with more rows than this holds codes the service never issued.
        min_bcrypt_cost: the lowest bcrypt work factor accepted for a code or
            token row (the page promises bcrypt for them, and 12 only for
            passwords; 10 is bcrypt's common default and OWASP's floor).
        recovery_token_max_lifetime_s: longest ``expires_at - created_at`` a
            recovery token may have (the reference's mail says 15 minutes).
    """

    backup_code_set_size: int = Field(10, ge=1, le=1000)
    min_bcrypt_cost: int = Field(10, ge=4, le=31)
    recovery_token_max_lifetime_s: int = Field(900, ge=1, le=30 * DAY_S)


class FernetPolicy(_Strict):
    """Attributes: max_clock_skew_s (future timestamps beyond this are invalid)."""

    max_clock_skew_s: int = Field(300, ge=0, le=DAY_S)


class BackupsPolicy(_Strict):
    """Attributes: retention_days, max_drill_age_days."""

    retention_days: int = Field(30, ge=1, le=3650)
    max_drill_age_days: int = Field(31, ge=1, le=3650)


class RotationPolicy(_Strict):
    """How keys.token_key_rotation loads the service.

    Attributes:
        seed_channels: channels the check makes through the API before rotating;
            nine in ten are never written under load, so only the rotation can
            re-encrypt them. 1000 (two of the reference service's 500-row
            batches) takes about 2 s to make on two cores; 3000 took 6.5 s and
            found nothing more.
        load_concurrency: clients calling the API throughout.
    """

    seed_channels: int = Field(1000, ge=1, le=100_000)
    load_concurrency: int = Field(4, ge=1, le=64)


class ScanPolicy(_Strict):
    """How whole columns (tokens, password hashes) are read.

    Attributes:
        jobs: worker processes that read key ranges of a table in parallel, one read-only
            connection each; 0 means one per CPU core. Tables of fewer rows than
            ``harness.parallel_scan.PARALLEL_MIN_ROWS`` are read in the check's own process.
        sample_rows: None (the default) judges every row. A number judges a uniform random
            sample of about that many rows of each table instead, and the verdict says
            SAMPLED with the bound the sample supports (``harness/sampling.py``).
    """

    jobs: int = Field(0, ge=0, le=256)
    sample_rows: int | None = Field(None, ge=1, le=10**12)


class TimeoutsPolicy(_Strict):
    """Attributes: connect_s, request_s, command_s, run_s (whole run); each more than 0 s and at
    most a day."""

    connect_s: float = Field(5.0, gt=0, le=DAY_S)
    request_s: float = Field(15.0, gt=0, le=DAY_S)
    command_s: float = Field(300.0, gt=0, le=DAY_S)
    run_s: float = Field(1800.0, gt=0, le=DAY_S)


class WaiversPolicy(_Strict):
    """What a waiver may ask for.

    Attributes:
        max_days_ahead: the latest expiry accepted, in days after the day the waiver file
            is loaded; a waiver that runs longer is refused (a waiver is reviewed, not forever).
    """

    max_days_ahead: int = Field(366, ge=1, le=3650)


class GatePolicy(_Strict):
    """What the release gate demands beyond "no FAIL, no ERROR, something verified".

    Attributes:
        require_attestations: a promise that needs a human attestation and has none
            makes the gate exit 2 (as ``run --require-attestations`` does).
    """

    require_attestations: bool = False


class Policy(_Strict):
    """Thresholds for every check.

    Attributes:
        schema_version: version of this file format.
        name, version: shown in reports.
        tls, hsts, headers, bcrypt, mfa, fernet, backups, rotation, timeouts: per area.
        scan: how whole columns are read (worker processes, sampling).
        waivers: what a waiver may ask for.
        gate: what the release gate demands.
    """

    schema_version: Literal[1] = 1
    name: str
    version: str
    tls: TlsPolicy = TlsPolicy()
    hsts: HstsPolicy = HstsPolicy()
    headers: HeadersPolicy = HeadersPolicy()
    bcrypt: BcryptPolicy = BcryptPolicy()
    mfa: MfaPolicy = MfaPolicy()
    fernet: FernetPolicy = FernetPolicy()
    backups: BackupsPolicy = BackupsPolicy()
    rotation: RotationPolicy = RotationPolicy()
    timeouts: TimeoutsPolicy = TimeoutsPolicy()
    scan: ScanPolicy = ScanPolicy()
    waivers: WaiversPolicy = WaiversPolicy()
    gate: GatePolicy = GatePolicy()

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if not self.tls.allowed_versions:
            raise ValueError("tls.allowed_versions is empty: no TLS version could ever pass")
        if self.timeouts.connect_s > self.timeouts.request_s:
            raise ValueError("timeouts.connect_s is longer than timeouts.request_s")
        if self.timeouts.request_s > self.timeouts.run_s:
            raise ValueError("timeouts.request_s is longer than timeouts.run_s")
        if "strict-transport-security" in self.headers.required and self.hsts.min_max_age_s == 0:
            raise ValueError("headers require HSTS but hsts.min_max_age_s is 0")
        return self

    def with_scan(self, *, jobs: int | None = None, sample_rows: int | None = None) -> Policy:
        """The same policy with ``[scan]`` overridden where an argument is given (the CLI's
        ``--jobs`` and ``--sample``), validated as the file's values are.

        Raises:
            PolicyError: a value out of range (one line naming it).
        """
        update: dict[str, int] = {}
        if jobs is not None:
            update["jobs"] = jobs
        if sample_rows is not None:
            update["sample_rows"] = sample_rows
        try:
            scan = ScanPolicy.model_validate({**self.scan.model_dump(), **update})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise PolicyError(f"scan.{first['loc'][0]}: {first['msg']}") from None
        return self.model_copy(update={"scan": scan})


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy (the default one when ``path`` is None).

    Raises:
        PolicyError: one line per problem, naming the file and key path.
    """
    return load_toml_model(path or DEFAULT_POLICY_PATH, Policy, what="policy", error=PolicyError)
