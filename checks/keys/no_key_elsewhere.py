"""keys.no_key_elsewhere: no HSM key in source, configuration, logs, images or environments.

Every key value read from the HSM (raw, base64, hex) and every key-shaped
string is searched for in the profile's source and configuration paths, the
service's logs, its processes' environments and, on Docker, its containers'
output and image layers. Symbolic links under the named roots are followed (a
Kubernetes secret volume is a tree of links). A hit fails; a search that could not
cover everything (a dangling link, a link loop, a refused permission, a FIFO or
device, a binary or oversized file) is never a pass: ERROR naming the gaps, except
kinds the key classes' ``[search] harmless_gap_kinds`` lists (a socket holds no
content).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.key_hits import KeySearchResult, SearchGap
from harness.keysearch import search_target
from harness.outcomes import Verdict
from harness.platform import OutOfReach, Platform
from harness.policy import Policy
from harness.prerequisites import require_hsm
from harness.probes import hsm as hsm_probe
from harness.probes.deployment import observe_search_places
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def no_key_elsewhere_verdict(result: KeySearchResult, key_labels: Sequence[str],
                             unsearchable_images: Sequence[str] = (),
                             processes_out_of_reach: OutOfReach | None = None,
                             harmless_gap_kinds: Sequence[str] = ()) -> Verdict:
    """Any failing hit FAILS naming the place; an incomplete search is ERROR; environments the
    platform cannot see (``processes_out_of_reach``: its reason) leave the verdict MANUAL.

    A gap of the walk (:class:`harness.key_hits.SearchGap`) makes the search incomplete
    unless its kind is in ``harmless_gap_kinds`` (the policy's list).
    """
    details: dict[str, Any] = {
        "keys_searched": list(key_labels),
        "hits": [hit.describe() for hit in result.hits],
        "reported_not_failed": [hit.describe() for hit in result.hits if not hit.fails],
        "coverage": result.coverage(),
    }
    failing = result.failing
    if failing:
        places = "; ".join(hit.describe() for hit in failing[:8])
        more = f" (and {len(failing) - 8} more)" if len(failing) > 8 else ""
        return Verdict.failed(f"Keys found outside the HSM: {places}{more}.", **details)
    if not key_labels:
        return Verdict.error("No key value could be read from the HSM to search for.", **details)
    if result.errors:
        return Verdict.error(f"The search is incomplete: {'; '.join(result.errors[:5])}.", **details)
    # A key past the size bound, in a file that looked binary, or behind an entry that could
    # not be read (a dangling link, a FIFO, a refused permission) would not have been seen:
    # a partial search is never a PASS.
    harmless = [gap for gap in result.gaps if gap.kind in harmless_gap_kinds]
    gaps = [f"could not read {gap.describe()}" for gap in result.gaps if gap not in harmless]
    gaps += [f"searched only the first {_size(limit)} of {path}" for path, limit in result.truncated_at]
    gaps += [f"searched only part of {path}" for path in result.truncated
             if path not in {p for p, _ in result.truncated_at}]
    gaps += [f"skipped {path} (binary file)" for path in result.binary_skipped]
    gaps += [f"could not read the layers of image {image}" for image in unsearchable_images]
    if gaps:
        more = f" (and {len(gaps) - 5} more)" if len(gaps) > 5 else ""
        return Verdict.error(f"The search is incomplete, {len(gaps)} gap(s): {'; '.join(gaps[:5])}"
                             f"{more}.", **details)
    if result.files_searched == 0 and not result.processes_searched:
        return Verdict.error("Nothing was searched: the profile names no scan paths, logs or "
                             "processes.", **details)
    searched = _searched(result, harmless)
    if not result.processes_searched:
        # The files were searched, the environments were not: that part needs a human.
        why = (f"were not searched. {processes_out_of_reach.sentence}" if processes_out_of_reach
               else "could not be inspected from here")
        return Verdict.manual(
            f"None of {len(key_labels)} HSM keys (raw, base64, hex) nor any key-shaped string was "
            f"found in {searched}, but the environments of the service's "
            f"processes {why}. By hand: on each service host, check that no service process's "
            "environment (/proc/PID/environ, docker inspect) holds a key.",
            **details)
    return Verdict.passed(
        f"None of {len(key_labels)} HSM keys (raw, base64, hex) nor any key-shaped string was found "
        f"in {searched} or the environment of {len(result.processes_searched)} processes.",
        **details)


def _searched(result: KeySearchResult, harmless: Sequence[SearchGap]) -> str:
    """Every file searched, the links followed, and the harmless entries not read, in words."""
    notes = []
    if result.links_followed:
        notes.append(f"{len(result.links_followed)} symbolic link(s) followed")
    if harmless:
        kinds = "/".join(sorted({gap.kind for gap in harmless}))
        notes.append(f"{len(harmless)} {kinds} entry(ies) not read: no content to hold a key")
    words = f"{result.files_searched} files" + (f" ({'; '.join(notes)})" if notes else "")
    return words


def _size(limit: int) -> str:
    return f"{limit / (1 << 20):g} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def _search_excludes(profile: TargetProfile, report_dir: Path) -> list[Path]:
    excludes = [report_dir]
    if profile.hsm is not None:
        token_dir = hsm_probe.softhsm_token_dir(profile.hsm)
        if token_dir is not None:
            excludes.append(token_dir)
    return excludes


@pytest.mark.claims("KEYS-NOT-ON-DISK")
@pytest.mark.access("hsm", "processes", "files")
def check_no_key_elsewhere(profile: TargetProfile, policy: Policy, platform: Platform,
                           known_secrets: KnownSecrets, evidence: EvidenceRecorder, report_dir: Path,
                           key_classes: KeyClasses) -> None:
    hsm = require_hsm(profile, evidence, "search the source, configuration files, process environments, "
                      "logs and image layers for the HSM's key values and show none holds one.")
    snap = hsm_probe.snapshot(hsm, known_secrets, read_prefix=hsm.key_namespace,
                              timeout_s=policy.timeouts.request_s)
    places = observe_search_places(platform, key_classes.search.max_log_bytes)
    result = search_target(places.source_paths, places.config_paths, places.log_dir,
                           places.processes, snap.values.items(), key_classes.search,
                           exclude=_search_excludes(profile, report_dir),
                           container_logs=places.container_logs, image_layers=places.layers)
    evidence.attach("search", {"hits": [hit.describe() for hit in result.hits],
                               "coverage": result.coverage(), "images": places.images_evidence(),
                               "keys": snap.values.fingerprints()})
    evidence.conclude(no_key_elsewhere_verdict(result, snap.values.labels(), places.unsearchable,
                                               places.processes_out_of_reach,
                                               key_classes.search.harmless_gap_kinds))
