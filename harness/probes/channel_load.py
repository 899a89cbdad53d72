"""Live traffic on a canary's channels: the load a token-key rotation must not interrupt.

A canary account with one brand seeds channels through the API (their OAuth
tokens are encrypted under the token key as they are stored), then
:func:`load_call` drives them from several threads, each with its own client:
``POST /channels/{id}/sync`` (decrypts a row) alternating with
``PUT /channels/{id}/tokens`` (encrypts new tokens). The caller's
:class:`~harness.load.SteadyLoad` times every call. The benchmark of the
rotation (``bench/bench_rotation.py``) drives the same load.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from harness.canaries import PLATFORMS, create_canary
from harness.load import LoadCall
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.api import VotrizApi
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

SEED_PARALLELISM = 8
# One seeded channel in WRITE_EVERY receives writes under load; the rest keep
# their seeded tokens, so only the rotation can re-encrypt them.
WRITE_EVERY = 10
#: The middle part of the canary's address: ``canary+keys-<random>@audit.invalid``.
CANARY_PURPOSE = "keys"


class RotationCanary:
    """A canary account with one brand, driven from several threads (one client each).

    Attributes:
        api: the client that signed the canary up (and removes it).
        account: the canary's account.
        token: its session token.
        brand_id: its brand.
    """

    def __init__(self, profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets) -> None:
        self.profile = profile
        self.policy = policy
        self.known_secrets = known_secrets
        self._local = threading.local()
        self._clients: list[VotrizApi] = []
        self._lock = threading.Lock()
        self.api = VotrizApi(profile, timeout_s=policy.timeouts.request_s)
        try:
            self.account = create_canary(self.api, known_secrets, CANARY_PURPOSE)
            # The account exists already: a failure from here on removes it, not leaves it.
            with self.account.removed_on_failure(self.api, known_secrets):
                assert self.api.token is not None
                self.token: str = self.api.token
                self.brand_id = self.api.create_brand("votriz-audit canary", "audit")
        except BaseException:
            self.api.close()
            raise
        self.token_secret = secrets.token_urlsafe(18)
        known_secrets.add(self.token_secret, "canary channel tokens (shared part)")

    def client(self) -> VotrizApi:
        """This thread's client, logged in as the canary."""
        api: VotrizApi | None = getattr(self._local, "api", None)
        if api is None:
            api = VotrizApi(self.profile, timeout_s=self.policy.timeouts.request_s)
            api.token = self.token
            self._local.api = api
            with self._lock:
                self._clients.append(api)
        return api

    def fresh_tokens(self, tag: str) -> tuple[str, str]:
        """A new (access, refresh) pair, each starting with the run's shared secret part.

        Registering thousands of tokens one by one would make every redaction
        pass slow; one registered secret at the start of every token covers
        them all: raw, hex, URL-encoded, and base64 (the part is 24 characters,
        a multiple of 3, so its base64 is a prefix of the token's).
        """
        access = f"{self.token_secret}.at.{tag}.{secrets.token_urlsafe(6)}"
        refresh = f"{self.token_secret}.rt.{tag}.{secrets.token_urlsafe(6)}"
        return access, refresh

    def release(self) -> str:
        """Remove the account and close every client (never raises).

        Returns '' once the account is gone, else its address and why it could not be removed.
        """
        try:
            left = self.account.remove(self.api, self.known_secrets)
        finally:
            self.api.close()
            for api in self._clients:
                api.close()
        return (f"the rotation's canary account {self.account.email} could not be removed "
                f"({left}): delete it by hand") if left else ""

    def close(self) -> None:
        """Remove the account and close every client.

        Raises:
            ProbeError: the account could not be removed (naming it).
        """
        left = self.release()
        if left:
            raise ProbeError(left)


def seed_channels(canary: RotationCanary, count: int) -> dict[int, tuple[str, str]]:
    """Create ``count`` channels through the API in parallel; channel id -> its tokens."""
    def one(index: int) -> tuple[int, tuple[str, str]]:
        tokens = canary.fresh_tokens(f"s{index}")
        channel_id = canary.client().create_channel(canary.brand_id, PLATFORMS[index % len(PLATFORMS)],
                                                    tokens[0], tokens[1])
        return channel_id, tokens

    with ThreadPoolExecutor(SEED_PARALLELISM) as pool:
        return dict(pool.map(one, range(count)))


def load_call(canary: RotationCanary, channel_ids: Sequence[int], expected: dict[int, tuple[str, str]],
              uncertain: set[int], writes: list[tuple[float, int]], load_clock: Callable[[], float],
              concurrency: int) -> Callable[[int, int], LoadCall]:
    """Alternate reads that decrypt (sync) and writes that encrypt (new tokens).

    ``expected`` is updated with the tokens of each successful write, ``writes``
    gets (load time, channel) of each, and ``uncertain`` every channel whose
    last write has no known outcome.
    """
    lock = threading.Lock()

    def call(worker: int, iteration: int) -> LoadCall:
        api = canary.client()
        if iteration % 2 == 0:
            channel = channel_ids[(worker * 7919 + iteration * 31) % len(channel_ids)]
            try:
                answer = api.request("POST", f"/channels/{channel}/sync", {})
            except ProbeError as exc:
                return LoadCall("sync", False, None, error_kind(str(exc)))
            return LoadCall("sync", answer.status == 200, answer.status,
                            "" if answer.status == 200 else f"HTTP {answer.status}")
        # Each worker writes only its own share of the written channels, so the
        # last successful write of a channel is known exactly. Nine channels in
        # ten are never written: a write re-encrypts its row under the new key
        # and would hide rows the rotation itself left behind.
        own = channel_ids[::WRITE_EVERY][worker::concurrency]
        if not own:
            return call(worker, iteration + 1)  # fewer written channels than workers: read
        channel = own[(iteration // 2) % len(own)]
        tokens = canary.fresh_tokens(f"w{worker}-{iteration}")
        started = load_clock()
        try:
            answer = api.request("PUT", f"/channels/{channel}/tokens",
                                 {"access_token": tokens[0], "refresh_token": tokens[1]})
        except ProbeError as exc:
            with lock:
                uncertain.add(channel)
            return LoadCall("write", False, None, error_kind(str(exc)))
        with lock:
            if answer.status == 200:
                expected[channel] = tokens
                writes.append((started, channel))
            else:
                uncertain.add(channel)
        return LoadCall("write", answer.status == 200, answer.status,
                        "" if answer.status == 200 else f"HTTP {answer.status}")

    return call


def error_kind(message: str) -> str:
    """The kind of a failed call, from the API probe's message (which names it last)."""
    if "no answer" in message:
        return "timeout"
    return message.rsplit(": ", 1)[-1] if ": " in message else message
