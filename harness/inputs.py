"""The audit's inputs, loaded and validated once per run.

A run judges one target (its profile) against rules that do not depend on the
target: the policy, the claims catalogue (linked to the checks' markers) and the
waivers. ``votriz-audit run`` loads the rules before it stands anything up, so a
bad file costs nothing, then the profile, and hands the result to the pytest
plugin in-process; the plugin loads the files itself only when pytest was
started without them (``pytest --target PROFILE``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from harness.claims import DEFAULT_CATALOGUE, Catalogue, CatalogueError, load_catalogue
from harness.policy import DEFAULT_POLICY_PATH, Policy, PolicyError, load_policy
from harness.profile import ProfileError, TargetProfile, load_profile
from harness.safe_files import Cap, FileRefused, read_bytes
from harness.waivers import WaiverError, WaiverSet, load_waivers


class InputError(Exception):
    """An input file is unreadable or invalid: one line per problem, each naming the file and key.

    Attributes:
        path: the file that failed to load.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class AuditRules:
    """What a run judges against, whatever the target.

    Attributes:
        policy: the audit policy.
        policy_path: the file it was read from.
        policy_sha256: SHA-256 of that file's bytes.
        catalogue: the claims, each linked to the checks that declare it.
        waivers: the waivers (empty without a waiver file).
    """

    policy: Policy
    policy_path: Path
    policy_sha256: str
    catalogue: Catalogue
    waivers: WaiverSet


@dataclass(frozen=True)
class AuditInputs:
    """Everything a run needs before its first check: the target and the rules.

    Attributes:
        profile: the target profile.
        profile_path: the file it was read from.
        rules: policy, catalogue and waivers.
    """

    profile: TargetProfile
    profile_path: Path
    rules: AuditRules


def load_rules(policy: Path | None = None, waivers: Path | None = None,
               claims: Path | None = None) -> AuditRules:
    """Load the policy (default: the bundled one), the catalogue (default: the bundled one) and
    the waivers (none without a file); a waiver must name a check the catalogue links.

    Raises:
        InputError: naming the file and key of the first file that does not load.
    """
    policy_path = policy or DEFAULT_POLICY_PATH
    claims_path = claims or DEFAULT_CATALOGUE
    try:
        loaded_policy = load_policy(policy_path)
    except PolicyError as exc:
        raise InputError(str(exc), policy_path) from None
    try:
        catalogue = load_catalogue(claims_path)
    except CatalogueError as exc:
        raise InputError(str(exc), claims_path) from None
    try:
        waiver_set = load_waivers(waivers, known_checks=catalogue.check_ids(),
                                  max_days_ahead=loaded_policy.waivers.max_days_ahead)
    except WaiverError as exc:
        raise InputError(str(exc), waivers or Path()) from None
    try:
        digest = hashlib.sha256(read_bytes(policy_path, "policy", Cap.TOML)).hexdigest()
    except FileRefused as exc:
        raise InputError(str(exc), policy_path) from None
    return AuditRules(loaded_policy, policy_path, digest, catalogue, waiver_set)


def load_inputs(target: Path, rules: AuditRules | None = None, *, policy: Path | None = None,
                waivers: Path | None = None, claims: Path | None = None) -> AuditInputs:
    """Load the target profile and join it to ``rules`` (loaded from ``policy``, ``waivers`` and
    ``claims`` by :func:`load_rules` when not given).

    Raises:
        InputError: naming the file and key of the first file that does not load.
    """
    if rules is None:
        rules = load_rules(policy, waivers, claims)
    try:
        profile = load_profile(target)
    except ProfileError as exc:
        raise InputError(str(exc), target) from None
    return AuditInputs(profile, target, rules)
