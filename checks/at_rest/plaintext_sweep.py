"""at_rest.plaintext_sweep: no known secret, in any encoding, and no secret-shaped value
the audit did not plant (prefixed provider tokens, OAuth token fields, JWTs, Authorization
headers, private keys; in Redis, a password/email/token/secret field that is not
ciphertext), anywhere the service stores data (database, Redis, logs, backups).

The areas are searched by ``harness/probes/plaintext.py``; the shapes are
``harness/formats/secret_patterns.py``'s rules.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.canaries import PLATFORMS, canary_refused
from harness.details import plural
from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import CANARY_FIXTURE
from harness.probes.plaintext import SweepObservation, observe_sweep
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.shape_sweep import SENSITIVE_FIELDS, ShapeHit

#: What a human must do to search each area by hand, when the harness could not.
SWEEP_BY_HAND: dict[str, str] = {
    "database": "dump the service's database (`pg_dump --data-only votriz > db.sql`) and search "
                "it with `grep -c -F -f needles.txt db.sql`",
    "redis": "list every key (`redis-cli --scan`) and search each value (`redis-cli --raw DUMP "
             "KEY`, or the RDB/AOF files under `redis-cli CONFIG GET dir`) with "
             "`grep -c -F -f needles.txt`",
    "logs": "search every log file of the service (application, workers, edge) with "
            "`grep -r -c -F -f needles.txt LOG_DIR`",
    "backups": "take a fresh backup and search it, and every file in the backup store, with "
               "`grep -c -F -f needles.txt FILE`",
}
#: The promised areas of the sweep: the page says no sensitive data is stored in plaintext.
SWEEP_AREAS = tuple(SWEEP_BY_HAND)
_NEEDLES = ("(needles.txt: a test account's password, e-mail, OAuth tokens, backup codes and "
            "recovery token, each raw, base64, base64url, hex and URL-encoded)")
#: Places a FAIL message names; the evidence lists up to 200 per area.
_LISTED = 12


def _shape_findings(hits: list[ShapeHit], total: int) -> str:
    """One sentence naming each secret-shaped value by kind, place and fingerprint."""
    listed = "; ".join(hit.describe() for hit in hits[:_LISTED])
    more = f"; and {total - _LISTED} more" if total > _LISTED else ""
    return (f"Secret-shaped values the audit did not plant are stored in plaintext "
            f"({plural(total, 'value')}): {listed}{more}.")


def _shapes_searched(obs: SweepObservation) -> str:
    """What the shape scan covered, for a PASS message."""
    by_name = {a.name: a for a in obs.areas if a.searched}
    parts = []
    if "database" in by_name:
        parts.append(f"every row of the database's text columns "
                     f"({plural(by_name['database'].shape_rows, 'row')})")
    parts += [{"redis": "every Redis value (with its hash fields and JSON keys named "
                        f"{', '.join(sorted(SENSITIVE_FIELDS))} holding no Fernet token or "
                        "bcrypt hash)",
               "logs": "every log line"}[name]
              for name in ("redis", "logs") if name in by_name]
    if "backups" in by_name:
        backups = by_name["backups"]
        opaque = len(backups.shape_opaque)
        parts.append("the backup files" if not opaque else
                     f"the backup files but {plural(opaque, 'ciphertext-like file')} (high-entropy "
                     "binary at start, middle and end: no shape to recognise; searched for the "
                     "known secrets only)")
    cut = [c for a in obs.areas for c in a.shape_cut]
    bound = f"; searched only in part: {', '.join(cut[:5])}" if cut else ""
    return (f" No secret-shaped value ({obs.shape_rules} rules: prefixed provider tokens, values "
            "of access_token/refresh_token/id_token/client_secret fields, JWTs, Authorization "
            "headers, private keys, high-entropy cells that are not Fernet tokens in ciphertext "
            f"columns; an unprefixed token outside such a field has no shape to recognise) in "
            f"{', '.join(parts)}{bound}.")


def plaintext_sweep_verdict(obs: SweepObservation) -> Verdict:
    """No known secret, in any encoding, anywhere the service stores data."""
    details: dict[str, Any] = {
        "secrets": obs.secrets, "needles": obs.needles, "canary_secrets": obs.canary_secrets,
        "canary_note": obs.canary_note, "short_secrets_not_swept": obs.short_secrets,
        "shape_rules": obs.shape_rules,
        "areas": [{"name": a.name, "searched": a.searched, "locations": a.locations,
                   "bytes": a.bytes_scanned, "hits_total": a.hits_total,
                   "hits": [h.describe() for h in a.hits[:200]], "problem": a.problem,
                   "note": a.note, "shape_hits_total": a.shape_hits_total,
                   "shape_hits": [{"rule": h.rule, "kind": h.kind, "place": h.place,
                                   "fingerprint": h.fingerprint} for h in a.shape_hits[:200]],
                   "shape_rows": a.shape_rows, "shape_bytes": a.shape_bytes,
                   "shape_cut": list(a.shape_cut),
                   "shape_opaque": list(a.shape_opaque)} for a in obs.areas]}
    hits = [h for a in obs.areas for h in a.hits]
    shapes = [h for a in obs.areas for h in a.shape_hits]
    shapes_total = sum(a.shape_hits_total for a in obs.areas)
    if shapes and not hits:
        return Verdict.failed(_shape_findings(shapes, shapes_total), **details)
    if hits:
        # One entry per place (column, key or file), with the secrets found there.
        places: dict[str, tuple[set[str], int, int]] = {}
        for hit in hits:
            labels, first, count = places.get(hit.location, (set(), hit.offset, 0))
            labels.add(hit.label.split(" (")[0])
            places[hit.location] = (labels, min(first, hit.offset), count + 1)
        listed = "; ".join(
            f"{where} ({plural(count, 'occurrence')}"
            + ("" if where.startswith(("postgres:", "redis:")) else f", first at offset {first}")
            + f": {', '.join(sorted(labels))})"
            for where, (labels, first, count) in sorted(places.items())[:_LISTED])
        more = f"; and {len(places) - _LISTED} more places" if len(places) > _LISTED else ""
        total = sum(a.hits_total for a in obs.areas)
        also = f" {_shape_findings(shapes, shapes_total)}" if shapes else ""
        return Verdict.failed(f"Known secrets are stored in plaintext ({total} occurrences in "
                              f"{plural(len(places), 'place')}): {listed}{more}.{also}", **details)
    by_name = {a.name: a for a in obs.areas}
    skipped = [a.name for a in obs.areas if not a.searched]
    skipped += [name for name in SWEEP_AREAS if name not in by_name]
    not_searched = "; ".join(
        f"{name} ({by_name[name].note if name in by_name else 'not observed'})"
        if name not in by_name or by_name[name].note else name for name in skipped)
    problems = [f"{a.name}: {a.problem}" for a in obs.areas if a.problem]
    if problems:
        return Verdict.error("No known secret was found, but not everything could be searched: "
                             + "; ".join(problems) + "."
                             + (f" Not searched at all: {not_searched}." if skipped else ""),
                             **details)
    searched = [a for a in obs.areas if a.searched]
    where = ", ".join(f"{a.name} ({a.locations} places, {a.bytes_scanned} bytes)"
                      for a in searched)
    if skipped:
        # A sweep that did not look everywhere the page promises cannot say "nowhere".
        by_hand = "; ".join(f"{name}: {SWEEP_BY_HAND.get(name, 'search it')}" for name in skipped)
        return Verdict.manual(
            (f"No known secret was found in {where}, but " if searched else "")
            + f"{'these areas were' if searched else 'These areas were'} not searched: "
            f"{not_searched}. By hand {_NEEDLES}: {by_hand}.", **details)
    if obs.canary_secrets == 0:
        note = f" ({obs.canary_note})" if obs.canary_note else ""
        return Verdict.manual(
            f"No canary secret was registered{note}, so the sweep of {where} looked only for "
            f"{plural(obs.secrets, 'other known secret')}, none of them user data planted through "
            "the service. By hand: plant a test account through the API (sign up, set up MFA, connect "
            f"a channel of each of {', '.join(PLATFORMS)}, request a recovery mail), then search "
            f"the database, Redis, the logs and the backups {_NEEDLES}.", **details)
    short = (f" ({plural(obs.short_secrets, 'known secret')} of 4 or 5 bytes not searched: "
             "as substrings they would match by chance)" if obs.short_secrets else "")
    shaped = _shapes_searched(obs) if obs.shape_rules else ""
    return Verdict.passed(
        f"None of {obs.secrets} known secrets ({obs.canary_secrets} of them the canary's; "
        f"{obs.needles} encoded forms: raw, base64, base64url, hex, URL-encoded) occurs in "
        + where + "." + short + shaped, **details)


@pytest.mark.claims("OVERVIEW-NO-PLAINTEXT")
@pytest.mark.access("api", "database", "redis", "files")
def check_plaintext_sweep(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                          known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    # The canary must exist before the sweep, so that there is something to find; it needs no
    # mail (its recovery token is among its secrets only when a mailbox could be read).
    note = canary_refused(profile) or ""
    if not note:
        request.getfixturevalue(CANARY_FIXTURE)
    if note and len(known_secrets) == 0:
        evidence.manual(f"No secret is known to search for ({note}). By hand: plant a test "
                        "account's values and search the database, Redis, logs and backups.")
    verdict = plaintext_sweep_verdict(observe_sweep(profile, policy, known_secrets, note))
    evidence.attach("plaintext-sweep", verdict.details)
    evidence.conclude(verdict)
