"""The evidence recorder a check writes to, and the result it produces.

A check attaches what it observed (an evidence model of
:mod:`harness.evidence_kinds`, other JSON-able data, or text) and concludes with
a :class:`~harness.outcomes.Verdict`. Everything passes through the known
secrets' redaction before it touches the disk.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.outcomes import CheckOutcome, Outcome, Verdict
from harness.redaction import KnownSecrets

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class EvidenceRecorder:
    """Collects the evidence and the verdict of one check.

    Attributes:
        check_id: the check this recorder belongs to.
        directory: where attachments are written (``REPORT/evidence/CHECK_ID``).
        attachments: relative paths of the files written so far.
        verdict: the verdict, once concluded.
    """

    def __init__(self, check_id: str, directory: Path, secrets: KnownSecrets) -> None:
        self.check_id = check_id
        self.directory = directory
        self.secrets = secrets
        self.attachments: list[str] = []
        self.verdict: Verdict | None = None

    def attach(self, name: str, data: Any) -> Path:
        """Write one piece of evidence (model or dict/list → JSON, str → text), redacted.

        A model is written with the keys the check gave it (as the model names them) and its
        ``kind``, so the report draws it with that kind's view.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        if isinstance(data, BaseModel):
            data = {**data.model_dump(mode="json", by_alias=True, exclude_unset=True),
                    **data.model_dump(mode="json", include={"kind"})}
        if isinstance(data, str):
            path = self.directory / (_SAFE_NAME.sub("-", name) + ".txt")
            text = data
        else:
            path = self.directory / (_SAFE_NAME.sub("-", name) + ".json")
            text = json.dumps(data, indent=2, sort_keys=True, default=str)
        path.write_text(self.secrets.redact(text), encoding="utf-8")
        self.attachments.append(path.name)
        return path

    def conclude(self, verdict: Verdict) -> None:
        """Record the verdict. Anything but PASS ends the check at once."""
        safe = verdict.model_copy(update={"message": self.secrets.redact(verdict.message)})
        self.verdict = safe
        if safe.outcome is not Outcome.PASS:
            raise CheckOutcome(safe)

    def not_applicable(self, message: str) -> None:
        """End the check as NOT_APPLICABLE (the target lacks what it is about)."""
        self.conclude(Verdict.not_applicable(message))

    def manual(self, message: str) -> None:
        """End the check as MANUAL (a human must attest what no machine can see)."""
        self.conclude(Verdict.manual(message))
