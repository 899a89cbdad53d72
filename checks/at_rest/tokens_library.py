"""at_rest.tokens_library: the tokens are encrypted with the Python ``cryptography`` library.

Which library made a Fernet token cannot be seen in its bytes (every correct
implementation writes the same format), so the check looks where the work is
done: the memory maps of the service's running processes
(``harness/probes/loaded_libraries.py``, processes from ``harness/platform``).
Every Python process must keep cryptography's binding as its only native AES
implementation, and at least one must have it loaded.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.details import plural
from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.platform import OutOfReach, platform_for
from harness.policy import Policy
from harness.probes.loaded_libraries import (
    MAX_MODULE_BYTES,
    LoadedLibraries,
    ProcessLibraries,
    loaded_libraries_of,
)
from harness.profile import TargetProfile

#: What memory maps cannot show, said in every PASS.
LIMIT = ("An AES written in pure Python, or one reached through ctypes in the system's OpenSSL, "
         "leaves no module of its own in the memory maps and is not seen.")


def tokens_library_out_of_reach(reason: str) -> Verdict:
    """MANUAL: the platform does not let the harness see the service's processes."""
    return Verdict.manual(
        f"The service's processes cannot be inspected ({reason}), so which AES implementation "
        "they have loaded cannot be seen. By hand: on the API's host, for every API process "
        "(gunicorn master and workers) show that `/proc/PID/maps` maps "
        "`cryptography/hazmat/bindings/_rust*.so` and no other AES extension module (e.g. "
        "pycryptodome's or pycryptodomex's `Cipher/_raw_aes*.so`), and that the code that "
        "encrypts channel tokens calls `cryptography.fernet`.", reason=reason)


def _processes(n: int, kind: str) -> str:
    return f"{n} {kind} process" + ("" if n == 1 else "es")


def _binding(process: ProcessLibraries) -> str:
    version = process.cryptography_version or "version not readable"
    return f"{process.where} ({version})"


def tokens_library_verdict(obs: LoadedLibraries) -> Verdict:
    """PASS when every Python process has no native AES but cryptography's and one has it loaded;
    FAIL naming each process with another AES implementation, or when none has cryptography's."""
    python = [p for p in obs.processes if p.python]
    details: dict[str, Any] = {
        "processes": [{"process": p.where, "python": p.python, "cryptography": p.cryptography,
                       "cryptography_version": p.cryptography_version,
                       "native_modules": p.native_modules,
                       "other_aes": [m.describe() for m in p.other_aes],
                       "unexamined": list(p.unexamined)} for p in obs.processes],
        "vanished": list(obs.vanished), "unreadable": list(obs.unreadable),
        "modules_read": obs.modules_read, "bytes_read": obs.bytes_read,
        "max_module_bytes": MAX_MODULE_BYTES}
    others = [f"{p.where} has {'; '.join(m.describe() for m in p.other_aes)}"
              for p in python if p.other_aes]
    if others:
        return Verdict.failed(
            "Another native AES implementation than the `cryptography` library is loaded in the "
            f"service's Python processes: {'; '.join(others)}. The page names `cryptography` as the "
            "implementation that encrypts the tokens; these processes carry a second one.", **details)
    unexamined = [f"{p.where}: {note}" for p in python for note in p.unexamined]
    if obs.unreadable or unexamined:
        return Verdict.error(
            "Not every process or module could be examined, so another AES implementation may be "
            f"loaded unseen: {'; '.join([*obs.unreadable, *unexamined])}.", **details)
    if not python:
        seen = ", ".join(p.where for p in obs.processes) or "none"
        gone = f"; ended while looked at: {', '.join(obs.vanished)}" if obs.vanished else ""
        return Verdict.error(
            f"No Python process among the service's processes whose maps were read ({seen}{gone}): "
            "the processes that encrypt the tokens were not observed.", **details)
    using = [p for p in python if p.cryptography]
    if not using:
        return Verdict.failed(
            "No Python process of the service has the `cryptography` library's binding "
            f"(cryptography/hazmat/bindings/_rust*.so) loaded: {', '.join(p.where for p in python)}.",
            **details)
    without = [p.where for p in python if not p.cryptography]
    rest = (f" {_processes(len(without), 'other Python')} {'loads' if len(without) == 1 else 'load'} "
            f"no native AES implementation at all ({', '.join(without)})." if without else "")
    gone = f" Ended while looked at (skipped): {', '.join(obs.vanished)}." if obs.vanished else ""
    modules = sum(p.native_modules for p in python)
    return Verdict.passed(
        f"{_processes(len(using), 'Python')} of the service {'has' if len(using) == 1 else 'have'} "
        "the `cryptography` library's "
        f"binding loaded ({', '.join(_binding(p) for p in using)}) and no other native AES "
        f"implementation ({plural(modules, 'native Python module')} examined across them).{rest}{gone} "
        f"{LIMIT}", **details)


@pytest.mark.claims("REST-TOKENS-LIBRARY")
@pytest.mark.access("processes")
def check_tokens_library(profile: TargetProfile, policy: Policy, evidence: EvidenceRecorder) -> None:
    obs = loaded_libraries_of(platform_for(profile, policy))
    if isinstance(obs, OutOfReach):
        evidence.conclude(tokens_library_out_of_reach(obs.reason))
        return
    verdict = tokens_library_verdict(obs)
    evidence.attach("tokens-library", verdict.details)
    evidence.conclude(verdict)
