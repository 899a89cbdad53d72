"""Known secrets searched for everywhere the service stores data.

The database (every readable column), Redis (every key), the logs (files,
and the containers' output on a Docker target) and the backup store, each
searched by :class:`~harness.sweep.SecretSweep` for every known secret in
every encoding. An area the profile does not name is reported as not
searched, never as clean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import docker_engine
from harness.probes.database import open_database
from harness.probes.redis_store import redis_contents
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepHit, SweepReport


@dataclass(frozen=True)
class SweepArea:
    """One place searched for known secrets.

    Attributes:
        name: ``database``, ``redis``, ``logs`` or ``backups``.
        searched: whether it was searched.
        locations: columns, keys or files searched.
        bytes_scanned: bytes searched.
        hits: where secrets were found (label and location, never the value).
        hits_total: how many occurrences in all.
        problem: why it was not (fully) searched: unreadable, not reachable.
        note: why it was not searched when the profile does not name it.
    """

    name: str
    searched: bool
    locations: int = 0
    bytes_scanned: int = 0
    hits: tuple[SweepHit, ...] = ()
    hits_total: int = 0
    problem: str = ""
    note: str = ""


@dataclass(frozen=True)
class SweepObservation:
    """Everything at_rest.plaintext_sweep judges.

    Attributes:
        secrets: how many known secrets were searched for.
        needles: how many encoded forms of them.
        areas: one per place.
        canary_secrets: how many of the secrets are the canary account's (planted
            through the API, so they travel wherever the service stores user data).
        canary_note: why there is no canary, if there is none.
        short_secrets: known secrets too short (4 or 5 bytes, e.g. a PIN) to search
            for as substrings of stored data, where they would match by chance;
            not among ``secrets``.
    """

    secrets: int
    needles: int
    areas: tuple[SweepArea, ...]
    canary_secrets: int = 0
    canary_note: str = ""
    short_secrets: int = 0


#: Every secret the canary account plants is registered under a label starting so.
CANARY_LABEL_PREFIX = "canary "


def _area(name: str, run: Callable[[SweepReport], None]) -> SweepArea:
    report = SweepReport()
    try:
        run(report)
    except ProbeError as exc:
        return SweepArea(name, True, report.locations, report.bytes_scanned, tuple(report.hits),
                         report.hits_total, str(exc))
    problem = ("unreadable: " + "; ".join(report.unreadable[:5])) if report.unreadable else ""
    return SweepArea(name, True, report.locations, report.bytes_scanned, tuple(report.hits),
                     report.hits_total, problem)


def observe_sweep(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                  canary_note: str = "") -> SweepObservation:
    """Search the database, Redis, the logs and the backups for every known secret."""
    sweep = SecretSweep.from_known(known)
    areas = []

    def database(report: SweepReport) -> None:
        with open_database(profile, policy, known) as db:
            sweep.sweep(db.dump(), report)

    def redis_store(report: SweepReport) -> None:
        sweep.sweep(redis_contents(profile, policy, known), report)

    log_dir = profile.log_dir
    backup_dir = profile.operations.backup_dir

    def logs(report: SweepReport) -> None:
        if log_dir is not None:
            sweep.sweep_files([log_dir], report)
        if profile.backend == "docker" and profile.docker is not None:
            # What the containers wrote to their standard output, as the engine keeps it.
            client = docker_engine.docker_client(policy)
            try:
                containers = docker_engine.project_containers(profile.docker.project, client)
                outputs = docker_engine.container_logs(containers, 256 << 20)
            finally:
                client.close()
            sweep.sweep(((log.where, [log.data]) for log in outputs), report)
            cut = [log.where for log in outputs if log.truncated]
            if cut:
                raise ProbeError(f"searched only the first 256 MiB of {', '.join(cut)}")

    def backups(report: SweepReport) -> None:
        assert backup_dir is not None
        sweep.sweep_files([backup_dir], report)

    areas.append(_area("database", database) if profile.database is not None
                 else SweepArea("database", False, note="no [database] in the profile"))
    areas.append(_area("redis", redis_store) if profile.redis is not None
                 else SweepArea("redis", False, note="no [redis] in the profile"))
    areas.append(_area("logs", logs) if log_dir is not None or profile.docker is not None
                 else SweepArea("logs", False, note="no log directory (local.log_dir, docker.log_dir) "
                                                    "or [docker] project in the profile"))
    areas.append(_area("backups", backups) if backup_dir is not None
                 else SweepArea("backups", False, note="no operations.backup_dir in the profile"))
    swept = [label for secret, label in known.items() if len(secret) >= known.word_below]
    canary = sum(1 for label in swept if label.startswith(CANARY_LABEL_PREFIX))
    return SweepObservation(len(swept), sweep.needle_count, tuple(areas), canary, canary_note,
                            short_secrets=len(known) - len(swept))
