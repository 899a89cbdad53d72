"""The entry the two password-rotation checks share (``keys.db_password_rotation``,
``keys.redis_password_rotation``): one promise, "rotating the password ends the old one and
the service stays up", kept for two stores.

Each store is a row of one table (:data:`DATABASE_PASSWORD`, :data:`REDIS_PASSWORD`): the
profile's rotation command and section, what a person does instead, and how its password is
found and tried. :func:`conclude_password_rotation` does the same for both: the preamble
(:func:`harness.prerequisites.rotation_command`: MANUAL without the command, the permission
or a section), the observation (:func:`harness.probes.rotation.observe_password_rotation`),
the verdict kept beside it (:func:`harness.probes.rotation.password_rotation_verdict`), the
evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.policy import Policy
from harness.prerequisites import rotation_command
from harness.probes.credentials import try_postgres, try_redis
from harness.probes.rotation import observe_password_rotation, password_rotation_verdict
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@dataclass(frozen=True)
class StoredPassword:
    """One store's password as the rotation follows it.

    Attributes:
        label: its HSM label (read before and after the rotation).
        attempt: tries one password at the store (:mod:`harness.probes.credentials`).
        details: what the evidence adds about the store (e.g. the role), never a secret.
    """

    label: str
    attempt: Callable[[str], str]
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PasswordStore:
    """A store whose password the page promises to rotate.

    Attributes:
        what: the store as messages name it (``database``, ``Redis``).
        section: its profile section, needed with ``[hsm]`` and ``[api]``.
        operation: the profile's ``operations.<operation>`` command that rotates it.
        evidence: the name the verdict's details are attached under.
        password: its password in the profile, once the profile has every section.
        by_hand: what a person does when the harness may not.
    """

    what: str
    section: str
    operation: str
    evidence: str
    password: Callable[[TargetProfile, Policy, KeyClasses], StoredPassword]
    by_hand: str


def _app_role_password(profile: TargetProfile, policy: Policy, key_classes: KeyClasses) -> StoredPassword:
    """The application role's password, tried by logging in to PostgreSQL as that role."""
    assert profile.hsm is not None and profile.database is not None
    dsn, role = profile.database.dsn, profile.database.app_role or key_classes.proof.db_app_role
    return StoredPassword(profile.hsm.key_namespace + key_classes.proof.db_password,
                          lambda password: try_postgres(dsn, role, password, policy.timeouts.connect_s),
                          {"role": role})


def _auth_password(profile: TargetProfile, policy: Policy, key_classes: KeyClasses) -> StoredPassword:
    """Redis's password (the profile's own HSM label, else the page's), tried with AUTH."""
    assert profile.hsm is not None and profile.redis is not None
    target = profile.redis
    return StoredPassword(
        target.password_hsm_label or profile.hsm.key_namespace + key_classes.proof.redis_password,
        lambda password: try_redis(target.host, target.port, password, policy.timeouts.connect_s))


DATABASE_PASSWORD = PasswordStore(
    "database", "database", "rotate_db_password", "db-password-rotation", _app_role_password,
    by_hand=("rotate the database password, confirm the old one is refused by PostgreSQL and the "
             "service still works."))
REDIS_PASSWORD = PasswordStore(
    "Redis", "redis", "rotate_redis_password", "redis-password-rotation", _auth_password,
    by_hand="rotate the Redis password, confirm AUTH with the old one fails and the service still works.")


def conclude_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                               evidence: EvidenceRecorder, key_classes: KeyClasses,
                               store: PasswordStore) -> None:
    """Rotate ``store``'s password with the profile's command and conclude its check."""
    command = rotation_command(profile, evidence, store.operation, ("hsm", store.section, "api"),
                               by_hand=store.by_hand)
    password = store.password(profile, policy, key_classes)
    obs = observe_password_rotation(profile, policy, known_secrets, key_classes, command,
                                    password.label, password.attempt, store.what)
    verdict = password_rotation_verdict(obs)
    evidence.attach(store.evidence, {**verdict.details, **password.details})
    evidence.conclude(verdict)
