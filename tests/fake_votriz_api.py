"""A stand-in for :class:`harness.probes.api.VotrizApi` that tests of the canary's life cycle
patch in: one canary account, deletable once; every other request answers 200."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.probes.api import ApiResponse


class CanaryOnlyApi:
    """Just enough of VotrizApi for a canary: signed up by the test, deleted by the probe.

    Attributes:
        instances: every API the probe opened, in order (a subclass keeps its own list).
        token: the session token the test's canary holds.
        account_exists: whether the canary's account is still there.
    """

    instances: ClassVar[list[Any]] = []

    def __init__(self, profile: object, timeout_s: float) -> None:
        self.token: str | None = None
        self.account_exists = False
        type(self).instances.append(self)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass

    def request(self, method: str, path: str, json: Any = None, *, auth: bool = True,
                token: str | None = None) -> ApiResponse:
        if (method, path) == ("DELETE", "/account") and self.account_exists:
            self.account_exists = False
            return ApiResponse(204, {}, {})
        return ApiResponse(200, {}, {})
