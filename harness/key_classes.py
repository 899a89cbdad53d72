"""The page's key table as data: ``fixtures/policy/key-classes.toml``.

Each row of the page's "Key management" table is a key class with the HSM
labels (glob patterns, relative to ``hsm.key_namespace``) that hold it. The
file also names the labels the proofs and rotations use, and the settings of
the key search (:class:`~harness.keysearch.SearchSettings`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.keysearch import SearchSettings
from harness.outcomes import ProbeError
from harness.tomlfile import load_toml_model

KEY_CLASSES_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "policy" / "key-classes.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KeyClass(_Strict):
    """One row of the page's key table.

    Attributes:
        name: the row, in the page's words.
        labels: glob patterns of HSM labels, relative to ``hsm.key_namespace``.
    """

    name: str
    labels: tuple[str, ...]


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


class KeyClasses(_Strict):
    """``fixtures/policy/key-classes.toml``.

    Attributes:
        schema_version: version of the file format.
        classes: the page's key table.
        proof: labels used to prove which keys are in use and to rotate.
        search: settings of the key search.
    """

    schema_version: int = 1
    classes: tuple[KeyClass, ...] = Field(alias="class")
    proof: ProofLabels = ProofLabels()
    search: SearchSettings = SearchSettings()


def load_key_classes(path: Path | None = None) -> KeyClasses:
    """Read and validate the key classes (the default file when ``path`` is None).

    Raises:
        ProbeError: the file is unreadable or invalid, naming the file and key.
    """
    return load_toml_model(path or KEY_CLASSES_PATH, KeyClasses, what="key classes", error=ProbeError)
