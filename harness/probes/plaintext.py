"""Known secrets, and secrets the audit did not plant, searched for everywhere the service
stores data.

The database (every readable column), Redis (every key), the logs (files,
and the containers' output on a Docker target) and the backup store, each
searched by :class:`~harness.sweep.SecretSweep` for every known secret in
every encoding, and by :class:`~harness.shape_sweep.ShapeScan` for secret-shaped
values (provider tokens, JWTs, Authorization headers, private keys; in the
columns the inventory makes Fernet columns, high-entropy cells that are not
Fernet tokens): every row of every text column of every table, every Redis
value (read once for both; its hash fields and JSON keys named ``password``,
``email``, ``token`` … also judged for values that are not ciphertext), every
log line, and each backup file up to
:data:`BACKUP_SHAPE_BYTES`. An area the profile does not name is reported as
not searched, never as clean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.formats.secret_patterns import ShapeFinder
from harness.inventory_rules import InventoryRules, load_inventory_rules
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import docker_engine
from harness.probes.database import ColumnInfo, DatabaseProbe, open_database
from harness.probes.database_sweep import sweep_database
from harness.probes.redis_store import redis_contents
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.shape_sweep import FOUND_LABEL_PREFIX, ShapeHit, ShapeReport, ShapeScan
from harness.sweep import SecretSweep, SweepHit, SweepReport

#: Each backup file is searched for secret shapes up to this many bytes (the known secrets
#: in all of it), unless its start, middle and end are all ciphertext-like
#: (:func:`harness.shape_sweep.looks_opaque`): an encrypted backup holds no text to recognise, and
#: searching one by regular expressions costs seconds per 10 MB.
BACKUP_SHAPE_BYTES = 64 << 20


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
        shape_hits: secret-shaped values found (rule, place, fingerprint; never the value).
        shape_hits_total: how many in all.
        shape_rows: database rows searched for shapes (every row of every text column).
        shape_bytes: bytes searched for shapes.
        shape_cut: places searched for shapes only up to a byte bound, with the bound.
        shape_opaque: files not searched for shapes: ciphertext-like at start, middle and end.
    """

    name: str
    searched: bool
    locations: int = 0
    bytes_scanned: int = 0
    hits: tuple[SweepHit, ...] = ()
    hits_total: int = 0
    problem: str = ""
    note: str = ""
    shape_hits: tuple[ShapeHit, ...] = ()
    shape_hits_total: int = 0
    shape_rows: int = 0
    shape_bytes: int = 0
    shape_cut: tuple[str, ...] = ()
    shape_opaque: tuple[str, ...] = ()


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
        shape_rules: how many secret-shape rules were applied (0: none).
    """

    secrets: int
    needles: int
    areas: tuple[SweepArea, ...]
    canary_secrets: int = 0
    canary_note: str = ""
    short_secrets: int = 0
    shape_rules: int = 0


#: Every secret the canary account plants is registered under a label starting so.
CANARY_LABEL_PREFIX = "canary "


def _area(name: str, run: Callable[[SweepReport, ShapeScan], None], finder: ShapeFinder,
          known: KnownSecrets) -> SweepArea:
    report = SweepReport()
    shapes = ShapeScan(finder, known)
    problem = ""
    try:
        run(report, shapes)
    except ProbeError as exc:
        problem = str(exc)
    if not problem and report.unreadable:
        # The known-secret sweep and the shape scan walk the same roots: a gap is named once.
        gaps = list(dict.fromkeys(report.unreadable))
        problem = f"unreadable ({len(gaps)}): " + "; ".join(gaps[:5])
    found: ShapeReport = shapes.report
    return SweepArea(name, True, report.locations, report.bytes_scanned, tuple(report.hits),
                     report.hits_total, problem, shape_hits=tuple(found.hits),
                     shape_hits_total=found.hits_total, shape_rows=found.rows,
                     shape_bytes=found.bytes_scanned, shape_cut=tuple(found.cut),
                     shape_opaque=tuple(found.opaque))


def database_shapes(db: DatabaseProbe, columns: tuple[ColumnInfo, ...], rules: InventoryRules,
                    shapes: ShapeScan) -> None:
    """Every row of every column that can hold text, table by table (one read of each),
    searched for secret shapes; the inventory's Fernet columns also for high-entropy cells."""
    tables: dict[tuple[str, str], list[ColumnInfo]] = {}
    for info in columns:
        tables.setdefault((info.schema, info.table), []).append(info)
    for (schema, table), infos in tables.items():
        text = [c for c in infos if c.data_type not in rules.metadata_types]
        if not text:
            continue
        primary = [c.column for c in infos if c.is_primary_key]
        # A row is named by its single-column primary key, else by its physical place.
        key = primary[0] if len(primary) == 1 else "ctid"
        locations = [f"postgres:{c.name}" for c in text]
        ciphertext = [(rule := rules.rule_for(c.name)) is not None and rule.class_ == "fernet"
                      for c in text]
        shapes.report.places += len(text)
        for batch in db.stream_rows(table, [c.column for c in text], schema=schema, key=key,
                                    text_as_bytes=True):
            shapes.scan_rows(batch, locations, ciphertext)


def observe_sweep(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                  canary_note: str = "", *, finder: ShapeFinder | None = None,
                  rules: InventoryRules | None = None) -> SweepObservation:
    """Search the database, Redis, the logs and the backups for every known secret and for
    secret-shaped values."""
    sweep = SecretSweep.from_known(known)
    finder = finder or ShapeFinder()
    areas = []

    def database(report: SweepReport, shapes: ShapeScan) -> None:
        inventory = rules or load_inventory_rules()
        with open_database(profile, policy, known) as db:
            columns = db.visible_tables().columns
            sweep_database(db, sweep, report, profile=profile, policy=policy, columns=columns)
            database_shapes(db, columns, inventory, shapes)

    def redis_store(report: SweepReport, shapes: ShapeScan) -> None:
        # Each key's value is also judged by its field names (a password field in plaintext).
        sweep.sweep(shapes.tee(redis_contents(profile, policy, known), fields=True), report)

    log_dir = profile.log_dir
    backup_dir = profile.operations.backup_dir

    def logs(report: SweepReport, shapes: ShapeScan) -> None:
        if log_dir is not None:
            sweep.sweep_files([log_dir], report)
            shapes.scan_files([log_dir], report.unreadable)
        if profile.backend == "docker" and profile.docker is not None:
            # What the containers wrote to their standard output, as the engine keeps it.
            client = docker_engine.docker_client(policy)
            try:
                containers = docker_engine.project_containers(profile.docker.project, client)
                outputs = docker_engine.container_logs(containers, 256 << 20)
            finally:
                client.close()
            sweep.sweep(shapes.tee(((log.where, [log.data]) for log in outputs), lines=True),
                        report)
            cut = [log.where for log in outputs if log.truncated]
            if cut:
                raise ProbeError(f"searched only the first 256 MiB of {', '.join(cut)}")

    def backups(report: SweepReport, shapes: ShapeScan) -> None:
        assert backup_dir is not None
        sweep.sweep_files([backup_dir], report)
        shapes.scan_files([backup_dir], report.unreadable, lines=False,
                          limit_bytes=BACKUP_SHAPE_BYTES, skip_opaque=True)

    def area(name: str, run: Callable[[SweepReport, ShapeScan], None]) -> SweepArea:
        return _area(name, run, finder, known)

    areas.append(area("database", database) if profile.database is not None
                 else SweepArea("database", False, note="no [database] in the profile"))
    areas.append(area("redis", redis_store) if profile.redis is not None
                 else SweepArea("redis", False, note="no [redis] in the profile"))
    areas.append(area("logs", logs) if log_dir is not None or profile.docker is not None
                 else SweepArea("logs", False, note="no log directory (local.log_dir, docker.log_dir) "
                                                    "or [docker] project in the profile"))
    areas.append(area("backups", backups) if backup_dir is not None
                 else SweepArea("backups", False, note="no operations.backup_dir in the profile"))
    # Counted from the secrets known before the sweep: what it found is registered as it goes.
    swept = [label for secret, label in known.items()
             if len(secret) >= known.word_below and not label.startswith(FOUND_LABEL_PREFIX)]
    canary = sum(1 for label in swept if label.startswith(CANARY_LABEL_PREFIX))
    short = sum(1 for secret, label in known.items()
                if len(secret) < known.word_below and not label.startswith(FOUND_LABEL_PREFIX))
    return SweepObservation(len(swept), sweep.needle_count, tuple(areas), canary, canary_note,
                            short_secrets=short, shape_rules=len(finder.rules))
