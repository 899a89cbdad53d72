"""keys.read_at_start: keys are read through the HSM at start, not kept in the environment.

No service process holds the HSM PIN or a key in its environment, and only
the HSM itself keeps the token files (or the PIN file) open after start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.evidence import EvidenceRecorder
from harness.key_classes import KeyClasses
from harness.key_hits import KeyHit
from harness.keysearch import KeySearcher
from harness.outcomes import ProbeError, Verdict
from harness.platform import OutOfReach, Platform
from harness.policy import Policy
from harness.prerequisites import require_hsm
from harness.probes import hsm as hsm_probe
from harness.probes.processes import ProcessObservation
from harness.profile import ProfileError, TargetProfile
from harness.redaction import KnownSecrets


def is_hsm_process(name: str, hsm_names: Sequence[str]) -> bool:
    """Whether a profile process (or container) name marks the HSM itself."""
    base = name.split("/")[0]
    return base in hsm_names or any(base.endswith(f"-{hsm}") for hsm in hsm_names)


def read_at_start_verdict(processes: Sequence[ProcessObservation], env_hits: Sequence[KeyHit],
                          token_dir: Path | None, hsm_process_names: Sequence[str],
                          pin_file: Path | None = None) -> Verdict:
    """No PIN or key in a service process's environment; only the HSM holds token files
    (or the PIN file) open after start-up."""
    holders: list[str] = []
    unreadable: list[str] = []
    for process in processes:
        if is_hsm_process(process.name, hsm_process_names):
            continue
        if process.fd_error:
            unreadable.append(f"{process.where}: {process.fd_error}")
        if token_dir is not None:
            root = str(token_dir).rstrip("/") + "/"
            for target in process.open_files:
                if target.startswith(root) or target == str(token_dir):
                    holders.append(f"{process.where} holds {target}")
        if pin_file is not None and str(pin_file) in process.open_files:
            holders.append(f"{process.where} holds the PIN file {pin_file}")
        if process.environ_error:
            unreadable.append(f"{process.where}: {process.environ_error}")
    details: dict[str, Any] = {
        "processes": [p.where for p in processes],
        "environment_variables": {p.where: list(p.variable_names()) for p in processes},
        "token_dir": str(token_dir) if token_dir else None,
        "env_hits": [hit.describe() for hit in env_hits],
        "token_file_holders": holders,
    }
    if not processes:
        return Verdict.error("No service process was found to inspect.", **details)
    if env_hits:
        return Verdict.failed("Secrets in the environment of service processes: "
                              + "; ".join(hit.describe() for hit in env_hits[:8]) + ".", **details)
    if holders:
        return Verdict.failed("Service processes keep the HSM's files open after start: "
                              + "; ".join(holders[:8]) + ".", **details)
    if unreadable:
        return Verdict.error("Cannot inspect every service process: " + "; ".join(unreadable[:5]) + ".",
                             **details)
    if token_dir is None:
        return Verdict.manual(f"No PIN and no key in the environment of {len(processes)} service "
                              "processes, but the HSM's token files are not visible from here, so "
                              "open files were not judged. By hand: on the HSM host, check that no "
                              "service process keeps a token file open after start "
                              "(ls -l /proc/PID/fd).", **details)
    return Verdict.passed(f"No PIN and no key in the environment of {len(processes)} service "
                          f"processes; none holds a file under {token_dir} open.", **details)


@pytest.mark.claims("KEYS-READ-AT-START")
@pytest.mark.access("hsm", "processes")
def check_read_at_start(profile: TargetProfile, policy: Policy, platform: Platform,
                        known_secrets: KnownSecrets, evidence: EvidenceRecorder,
                        key_classes: KeyClasses) -> None:
    hsm = require_hsm(profile, evidence, "show that no service process holds the PIN or a key in its "
                      "environment or keeps a token file open after start.")
    processes = platform.processes()
    if isinstance(processes, OutOfReach):
        evidence.manual(f"{processes.sentence}. By hand: attest that no service process "
                        "holds the HSM PIN or a key in its environment and that only the HSM keeps "
                        "the token files open.")
        return
    snap = hsm_probe.snapshot(hsm, known_secrets, read_prefix=hsm.key_namespace,
                              timeout_s=policy.timeouts.request_s)
    try:
        pin = hsm.pin.read("HSM user PIN")
    except ProfileError as exc:
        raise ProbeError(str(exc)) from None
    values = [*snap.values.items(), ("HSM user PIN", pin.encode())]
    service = [p for p in processes
               if not is_hsm_process(p.name, key_classes.search.hsm_process_names)]
    env = KeySearcher(values, key_classes.search).search_processes(service)
    verdict = read_at_start_verdict(processes, env.hits, hsm_probe.softhsm_token_dir(hsm),
                                    key_classes.search.hsm_process_names, hsm.pin.file)
    evidence.attach("processes", verdict.details)
    evidence.conclude(verdict)
