"""The page's key table as data: ``fixtures/policy/key-classes.toml``.

Each row of the page's "Key management" table is a key class with the HSM
labels (glob patterns, relative to ``hsm.key_namespace``) that hold it. The
file also names the labels the proofs and rotations use, and the settings of
the key search (:class:`~harness.keysearch.SearchSettings`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.bundled import bundled
from harness.keysearch import SearchSettings
from harness.outcomes import ProbeError
from harness.tomlfile import load_toml_model

KEY_CLASSES_PATH = bundled("policy", "key-classes.toml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KeyClass(_Strict):
    """One row of the page's key table.

    Attributes:
        name: the row, in the page's words.
        labels: glob patterns of HSM labels, relative to ``hsm.key_namespace``.
        require: PKCS#11 boolean attributes (``token``, ``private``, ``sensitive`` ...,
            as :class:`harness.probes.hsm.HsmObject` names them) this class's objects
            must have, beyond :attr:`CustodyRules.require`.
    """

    name: str
    labels: tuple[str, ...]
    require: dict[str, bool] = Field(default_factory=dict)


class CustodyRules(_Strict):
    """How keys.hsm_custody judges objects beyond the table's labels.

    Attributes:
        require: attributes every key object of every class must have. An object in the
            namespace that matches no class is held to the strictest set: these and every
            class's own ``require``.
        retained_versions: glob patterns (relative to the namespace) of labels a rotation
            leaves holding an earlier version of a key: such an object may hold the same
            material as another label without failing the check (it is reported).
    """

    require: dict[str, bool] = Field(default_factory=lambda: {"token": True, "private": True})
    retained_versions: tuple[str, ...] = ()


class ProofLabels(_Strict):
    """Labels (relative to the namespace) and names the proofs and rotations use.

    Attributes:
        jwt_signing: the JWT signing secret.
        token_key_prefix: token-encryption key versions are PREFIX + version.
        db_password, redis_password: the passwords rotated.
        db_app_role: the application's database role.
        roll_grace_s: how long after a rotation command the old secret may still work.
    """

    jwt_signing: str = "jwt-signing"
    token_key_prefix: str = "token-encryption/v"
    db_password: str = "db/password"
    redis_password: str = "redis/password"
    db_app_role: str = "votriz_app"
    roll_grace_s: float = Field(10.0, ge=0)


class HardwareRules(_Strict):
    """How keys.hsm_hardware tells a software token from hardware.

    Attributes:
        software_tokens: case-insensitive substrings of a token's manufacturer or model
            that name a software PKCS#11 token (SoftHSM, Kryoptic, openCryptoki's soft
            token, NSS's softokn, p11-kit's trust module).
        attestation_claim: the claim id under which a profile's attestation of hardware
            backing is looked up (``[attestations]``).
    """

    software_tokens: tuple[str, ...] = ("softhsm",)
    attestation_claim: str = "KEYS-HSM"


class KeyClasses(_Strict):
    """``fixtures/policy/key-classes.toml``.

    Attributes:
        schema_version: version of the file format.
        classes: the page's key table.
        proof: labels used to prove which keys are in use and to rotate.
        custody: how the custody check judges objects beyond the table.
        hardware: how the hardware check tells a software token.
        search: settings of the key search.
    """

    schema_version: int = 1
    classes: tuple[KeyClass, ...] = Field(alias="class")
    proof: ProofLabels = ProofLabels()
    custody: CustodyRules = CustodyRules()
    hardware: HardwareRules = HardwareRules()
    search: SearchSettings = SearchSettings()


def strictest_requirements(classes: KeyClasses) -> dict[str, bool]:
    """The attributes an object of no class is held to: the common ones and every class's own
    (where two classes disagree on an attribute, the stricter value, True, wins)."""
    strictest = dict(classes.custody.require)
    for key_class in classes.classes:
        for name, value in key_class.require.items():
            strictest[name] = strictest.get(name, False) or value
    return strictest


def load_key_classes(path: Path | None = None) -> KeyClasses:
    """Read and validate the key classes (the default file when ``path`` is None).

    Raises:
        ProbeError: the file is unreadable or invalid, naming the file and key.
    """
    return load_toml_model(path or KEY_CLASSES_PATH, KeyClasses, what="key classes", error=ProbeError)
