"""Is the audited service healthy enough to be acted on, and to be judged?

A destructive operation (a key or password rotation) run against a service
whose database is down proves nothing and may make things worse; a failure
observed while a dependency was down is the dependency's outage, not a broken
promise. This module gives both decisions one observation:

- :func:`observe_health` asks, each within the policy's request deadline, the
  API's health endpoint through the edge and, where the profile gives access,
  PostgreSQL and Redis whether they answer, and returns a frozen
  :class:`HealthObservation` with the reason for each that does not.
- :data:`RUN_OUTAGES` is the run's memory: once any observation saw a
  dependency unavailable, :func:`before_destructive` refuses every later
  destructive operation against the same target without asking again
  ("not run: the database was unavailable at 05:12:03 UTC (...)"). It is a
  process-level registry (the pytest plugin runs one audit per process),
  keyed by the target, so a second target in the same process starts clean.
- :class:`HealthAround` is what a rotation's observation records: health
  before, the outage because of which the operation was not run, health right
  after. :meth:`HealthAround.explaining_outage` is the pure judgement the
  rotation verdicts use to turn failures into ERROR naming the dependency.

A server that answers with an error of its own (PostgreSQL refusing the
password, Redis asking for AUTH) is available: it answered. Only silence,
refusal of the connection, or a server saying it cannot take connections now
is an outage.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.api import VotrizApi
from harness.probes.pg_connect import connect_limit, libpq_connect_timeout
from harness.probes.redis_store import DeadlineRedis
from harness.profile import ProfileError, TargetProfile
from harness.redaction import KnownSecrets

#: The names the observations and messages use for each dependency.
API = "the API (through the edge)"
DATABASE = "the database"
REDIS = "Redis"
#: Dependencies whose outage explains a failed observation. The API itself is the
#: service under audit: it being down right after its own rotation is what the
#: rotation's promise ("no interruption", "the service still works") is about.
DEPENDENCIES = (DATABASE, REDIS)
# SQLSTATEs of a PostgreSQL that answers but cannot take a connection now.
_PG_UNAVAILABLE = {"57P03": "it cannot accept connections now (starting up or shutting down)",
                   "53300": "it has too many connections"}


@dataclass(frozen=True)
class DependencyHealth:
    """One part of the service, asked whether it answers.

    Attributes:
        name: :data:`API`, :data:`DATABASE` or :data:`REDIS`.
        where: its address (URL, host:port), never a credential.
        available: whether it answered within the deadline.
        reason: why it is not available ('' when it is).
        seconds: how long the question took.
    """

    name: str
    where: str
    available: bool
    reason: str = ""
    seconds: float = 0.0

    def as_evidence(self) -> dict[str, Any]:
        return {"name": self.name, "where": self.where, "available": self.available,
                "reason": self.reason, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Outage:
    """A dependency seen unavailable.

    Attributes:
        dependency: its name (:data:`DATABASE` ...).
        at: when it was seen (UTC).
        reason: what was seen (address and what happened).
        seen_by: what saw it (a check, ``health check before ...``).
    """

    dependency: str
    at: dt.datetime
    reason: str
    seen_by: str = ""

    @property
    def when(self) -> str:
        return f"{self.at.astimezone(dt.UTC):%H:%M:%S} UTC"

    def not_run(self) -> str:
        """The reason an operation was not run because of this outage."""
        return f"not run: {self.dependency} was unavailable at {self.when} ({self.reason})"

    def as_evidence(self) -> dict[str, Any]:
        return {"dependency": self.dependency, "at": self.at.isoformat(), "reason": self.reason,
                "seen_by": self.seen_by}


@dataclass(frozen=True)
class HealthObservation:
    """The service's parts, asked at one moment.

    Attributes:
        at: when the question started (UTC).
        parts: one answer per part the profile gives access to.
    """

    at: dt.datetime
    parts: tuple[DependencyHealth, ...]

    @property
    def healthy(self) -> bool:
        return all(part.available for part in self.parts)

    @property
    def unavailable(self) -> tuple[DependencyHealth, ...]:
        return tuple(part for part in self.parts if not part.available)

    def outage(self, names: tuple[str, ...] | None = None, seen_by: str = "") -> Outage | None:
        """The first unavailable part (among ``names``, when given), as an outage."""
        for part in self.unavailable:
            if names is None or part.name in names:
                return Outage(part.name, self.at, f"{part.where}: {part.reason}", seen_by)
        return None

    def as_evidence(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "healthy": self.healthy,
                "parts": [part.as_evidence() for part in self.parts]}


@dataclass(frozen=True)
class HealthAround:
    """The service's health around one destructive operation.

    Attributes:
        before: health just before it (None: not asked, e.g. an outage was already known).
        not_run: the outage because of which the operation was not run (None: it ran).
        after: health right after it and the observations that follow it (None: not asked).
    """

    before: HealthObservation | None = None
    not_run: Outage | None = None
    after: HealthObservation | None = None

    def explaining_outage(self) -> Outage | None:
        """The dependency outage seen right after the operation, if any.

        Failures observed then are explained by it: a check reports ERROR naming
        it, never FAIL. The API's own health is not a dependency (see :data:`DEPENDENCIES`).
        """
        return self.after.outage(DEPENDENCIES, "health check after the operation") \
            if self.after is not None else None

    def as_evidence(self) -> dict[str, Any]:
        return {"before": self.before.as_evidence() if self.before else None,
                "not_run": self.not_run.as_evidence() if self.not_run else None,
                "after": self.after.as_evidence() if self.after else None}


def explained_failure(outage: Outage, what: str, failures: list[str]) -> str:
    """The ERROR message of a check whose ``failures`` happened while ``outage`` lasted."""
    seen = "; ".join(failures) if failures else "the observations could not be completed"
    return (f"{outage.dependency[0].upper()}{outage.dependency[1:]} was unavailable right after "
            f"the {what} ({outage.reason}, at {outage.when}), which explains what failed: {seen}. "
            "Not judged as a broken promise.")


# --- asking each part -----------------------------------------------------------------------


def _api_health(profile: TargetProfile, timeout_s: float) -> DependencyHealth:
    where = f"{profile.edge.base_url}/healthz"
    started = time.monotonic()
    try:
        with VotrizApi(profile, timeout_s=timeout_s) as api:
            status = api.request("GET", "//healthz", auth=False).status
    except ProbeError as exc:
        return DependencyHealth(API, where, False, str(exc).split(": ", 1)[-1],
                                time.monotonic() - started)
    if status != 200:
        return DependencyHealth(API, where, False, f"answered HTTP {status}",
                                time.monotonic() - started)
    return DependencyHealth(API, where, True, "", time.monotonic() - started)


def _database_health(profile: TargetProfile, timeout_s: float,
                     known_secrets: KnownSecrets | None) -> DependencyHealth:
    assert profile.database is not None
    params = psycopg.conninfo.conninfo_to_dict(profile.database.dsn)
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    password: str | None = None
    source = profile.database.password
    if source is not None and source.file is not None:
        try:
            password = source.read("database.password")
        except ProfileError:
            password = None  # Unread, the server still answers by asking for it.
        if password is not None and known_secrets is not None:
            known_secrets.add(password, "auditor database password")
    started = time.monotonic()
    try:
        # psycopg bounds the whole connection (start-up and authentication included) by
        # connect_timeout, as the database probe's: a server that trickles its answers ends there.
        conn = psycopg.connect(profile.database.dsn, password=password,
                               connect_timeout=libpq_connect_timeout(timeout_s),
                               application_name="votriz-audit health")
    except psycopg.OperationalError as exc:
        seconds = time.monotonic() - started
        sqlstate = getattr(exc, "sqlstate", None)
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if isinstance(exc, psycopg.errors.ConnectionTimeout):
            return DependencyHealth(DATABASE, where, False, "the database did not complete the "
                                    f"connection ({connect_limit(timeout_s, 'timeouts.request_s')})", seconds)
        if sqlstate in _PG_UNAVAILABLE:
            return DependencyHealth(DATABASE, where, False, _PG_UNAVAILABLE[sqlstate], seconds)
        if sqlstate is not None or "password" in text or "authentication" in text:
            return DependencyHealth(DATABASE, where, True, "", seconds)  # It answered.
        return DependencyHealth(DATABASE, where, False, text, seconds)
    conn.close()
    return DependencyHealth(DATABASE, where, True, "", time.monotonic() - started)


def _redis_health(profile: TargetProfile, timeout_s: float) -> DependencyHealth:
    assert profile.redis is not None
    where = f"{profile.redis.host}:{profile.redis.port}"
    # One deadline over the whole question (connect, PING, every read of the reply), so a Redis
    # that trickles its reply ends by it. RESP2: a RESP3 client opens with HELLO, which a Redis
    # with a password refuses before any command.
    started = time.monotonic()
    with DeadlineRedis(profile.redis.host, profile.redis.port, password=None, seconds=timeout_s,
                       key="timeouts.request_s", connect_s=timeout_s, connect_key="timeouts.request_s",
                       whole=True, protocol=2, peer=REDIS) as store:
        try:
            store.client.ping()
        except (redis.AuthenticationError, redis.ResponseError):
            pass  # NOAUTH and the like: it answered.
        except redis.TimeoutError:
            return DependencyHealth(REDIS, where, False, store.timed_out(), time.monotonic() - started)
        except redis.RedisError as exc:
            return DependencyHealth(REDIS, where, False,
                                    (str(exc).splitlines() or [type(exc).__name__])[0][:200],
                                    time.monotonic() - started)
    return DependencyHealth(REDIS, where, True, "", time.monotonic() - started)


def observe_health(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets | None = None,
                   *, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
                   ) -> HealthObservation:
    """Ask every part the profile reaches, in parallel, each within ``timeouts.request_s``."""
    timeout_s = policy.timeouts.request_s
    askers: list[tuple[str, Callable[[], DependencyHealth]]] = []
    if profile.api is not None:
        askers.append((API, lambda: _api_health(profile, timeout_s)))
    if profile.database is not None:
        askers.append((DATABASE, lambda: _database_health(profile, timeout_s, known_secrets)))
    if profile.redis is not None:
        askers.append((REDIS, lambda: _redis_health(profile, timeout_s)))
    at = now()
    answers: list[DependencyHealth | None] = [None] * len(askers)

    def ask(index: int) -> None:
        name, asker = askers[index]
        try:
            answers[index] = asker()
        except Exception as exc:  # a client library's surprise: this part could not be asked
            answers[index] = DependencyHealth(name, "", False, f"{type(exc).__name__} while asking it")

    threads = [threading.Thread(target=ask, args=(i,), daemon=True) for i in range(len(askers))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s + 5
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    parts = tuple(answer if answer is not None else
                  DependencyHealth(name, "", False, f"no answer within {timeout_s + 5:g} s", timeout_s + 5)
                  for (name, _), answer in zip(askers, answers, strict=True))
    return HealthObservation(at, parts)


# --- the run's memory -----------------------------------------------------------------------


def target_key(profile: TargetProfile) -> str:
    """Which target an outage belongs to."""
    database = profile.database.dsn if profile.database else ""
    return f"{profile.name}|{profile.edge.base_url}|{profile.edge.connect_address}|{database}"


@dataclass
class OutageMemory:
    """The first outage seen on each target during this process (the run).

    Attributes:
        first: target key -> the first outage seen there.
    """

    first: dict[str, Outage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, profile: TargetProfile, outage: Outage | None) -> None:
        if outage is None:
            return
        with self._lock:
            self.first.setdefault(target_key(profile), outage)

    def seen(self, profile: TargetProfile) -> Outage | None:
        with self._lock:
            return self.first.get(target_key(profile)) if self.first else None

    def forget(self, profile: TargetProfile | None = None) -> None:
        """Forget one target's outage (or every one): for tests."""
        with self._lock:
            if profile is None:
                self.first.clear()
            else:
                self.first.pop(target_key(profile), None)


RUN_OUTAGES = OutageMemory()


def before_destructive(profile: TargetProfile, policy: Policy, what: str,
                       known_secrets: KnownSecrets | None = None) -> HealthAround:
    """Health before a destructive operation: ``not_run`` is set when it must not run.

    An outage seen earlier in the run refuses it without asking again; otherwise
    the service is asked now, and any unavailable part (the API included: an
    operation against a service that is down proves nothing) refuses it and is
    remembered for the rest of the run.
    """
    earlier = RUN_OUTAGES.seen(profile)
    if earlier is not None:
        return HealthAround(before=None, not_run=earlier)
    health = observe_health(profile, policy, known_secrets)
    outage = health.outage(seen_by=f"health check before the {what}")
    RUN_OUTAGES.record(profile, outage)
    return HealthAround(before=health, not_run=outage)


def after_operation(profile: TargetProfile, policy: Policy, around: HealthAround, what: str,
                    known_secrets: KnownSecrets | None = None) -> HealthAround:
    """``around`` with the health right after the operation; an outage is remembered."""
    health = observe_health(profile, policy, known_secrets)
    RUN_OUTAGES.record(profile, health.outage(seen_by=f"health check after the {what}"))
    return HealthAround(before=around.before, not_run=around.not_run, after=health)


def refuse_after_outage(profile: TargetProfile) -> None:
    """Raise when an outage of this target was seen earlier in the run.

    Raises:
        ProbeError: ``not run: <dependency> was unavailable at <time> (<reason>)``.
    """
    earlier = RUN_OUTAGES.seen(profile)
    if earlier is not None:
        raise ProbeError(earlier.not_run())

