"""The operator commands on real local stacks: rotations under load, backup and restore
drill, pruning, and each OPS fault (plus the JWT fault that needs a rotation) seen from outside.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from audit_cli import running_stack
from cryptography.fernet import Fernet, InvalidToken

from system_under_test.api.config import load_config
from system_under_test.api.keyring import (
    BACKUP_KEY_LABEL,
    DB_PASSWORD_LABEL,
    REDIS_PASSWORD_LABEL,
    fernet_key,
    token_key_versions,
)
from system_under_test.common import softhsm
from system_under_test.common.softhsm import HsmToken
from system_under_test.ops.backups import backup_time, read_chunks

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
OPS_FAULTS = ("rotation-drops-requests", "rotation-leaves-rows", "db-password-rotation-ignored",
              "backup-plaintext", "backup-retention-broken", "restore-drill-broken",
              "jwt-rotation-keeps-sessions")


@pytest.fixture(scope="module")
def ops_stack() -> Iterator[object]:
    """A clean stack of this module's own: rotations change its keys for good."""
    with running_stack() as info:
        yield info


@pytest.fixture(scope="module")
def ops_fault_stack() -> Iterator[object]:
    with running_stack(OPS_FAULTS) as info:
        yield info


def ops(info, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m system_under_test.ops ARGS --state-dir STATE`` as an operator would."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("VOTRIZ_HSM_PIN_FILE", None)
    result = subprocess.run([sys.executable, "-m", "system_under_test.ops", *args,
                             "--state-dir", str(info.state_dir)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
                            check=False)
    if check:
        assert result.returncode == 0, result.stderr[-500:]
    return result


def report(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(result.stdout.strip().splitlines()[-1])


def hsm_token(info) -> HsmToken:
    return HsmToken.of_stack(info.state_dir)


def hsm_values(info) -> dict[str, bytes]:
    labels = [str(o["label"]) for o in softhsm.inspect_objects(hsm_token(info))]
    return softhsm.read_values(hsm_token(info), labels)


def connect(info, password: str) -> psycopg.Connection:
    return psycopg.connect(load_config(info.api_config).database_dsn, password=password,
                           autocommit=True, connect_timeout=5)


def api(info) -> httpx.Client:
    # No keep-alive: every request opens a connection and asks the API to close it after its
    # answer, as the edge does (nginx sends "Connection: close" upstream). An idle kept-alive
    # connection would race a leaving worker closing it with the client's next request.
    # (Limits go to the transport: httpx ignores a Client's limits when given a transport.)
    transport = httpx.HTTPTransport(uds=str(info.api_socket),
                                    limits=httpx.Limits(max_keepalive_connections=0))
    return httpx.Client(transport=transport, base_url="http://votriz.test", timeout=30,
                        headers={"Connection": "close"})


def new_session(client: httpx.Client) -> tuple[str, dict[str, str]]:
    email = f"canary-{secrets.token_hex(6)}@example.com"
    assert client.post("/api/v1/signup", json={"email": email, "password": PASSWORD}
                       ).status_code == 201
    token = client.post("/api/v1/login", json={"email": email, "password": PASSWORD}).json()[
        "token"]
    return email, {"authorization": f"Bearer {token}"}


def new_channel(client: httpx.Client, headers: dict[str, str]) -> int:
    brand = client.post("/api/v1/brands", json={"name": "Canary", "industry": "tests"},
                        headers=headers).json()["id"]
    return client.post(f"/api/v1/brands/{brand}/channels", headers=headers, json={
        "platform": "instagram", "access_token": f"at-{secrets.token_hex(8)}",
        "refresh_token": f"rt-{secrets.token_hex(8)}"}).json()["id"]


class Load:
    """Requests in a loop while an operation runs: reads that decrypt, and plain reads.

    Attributes:
        ok: requests answered as expected.
        failed: requests refused, broken or answered with an error.
        failures: what each failed request got (status and body, or the error), with its time.
    """

    def __init__(self, info, headers: dict[str, str], channel: int) -> None:
        self._info, self._headers, self._channel = info, headers, channel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.ok = 0
        self.failed = 0
        self.failures: list[str] = []

    def _run(self) -> None:
        with api(self._info) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(f"/api/v1/channels/{self._channel}/sync",
                                         headers=self._headers)
                    good = answer.status_code == 200
                    outcome = f"{answer.status_code} {answer.text[:200]!r}"
                except httpx.HTTPError as exc:
                    good = False
                    outcome = f"{type(exc).__name__}: {exc}"
                self.ok += good
                self.failed += not good
                if not good:
                    self.failures.append(
                        f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {outcome}")
                time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def channel_rows(info) -> list[tuple[str, str]]:
    with connect(info, hsm_values(info)[DB_PASSWORD_LABEL].decode()) as conn:
        return conn.execute("SELECT access_token_enc, refresh_token_enc FROM channels").fetchall()


def token_keys(values: dict[str, bytes]) -> dict[int, Fernet]:
    return {v: Fernet(fernet_key(values[label])) for v, label in token_key_versions(values).items()}


def readable(fernet: Fernet, token: str) -> bool:
    try:
        fernet.decrypt(token.encode())
    except InvalidToken:
        return False
    return True


# --- clean stack --------------------------------------------------------------------------


def test_token_key_rotation_rewrites_every_row_without_dropping_requests(ops_stack):
    # Given channels in bulk and a user whose channel is synced (decrypted) in a loop
    ops(ops_stack, "seed-channels", "--count", "3000")
    old_keys = token_keys(hsm_values(ops_stack))
    assert list(old_keys) == [1]
    with api(ops_stack) as client:
        _, headers = new_session(client)
        channel = new_channel(client, headers)
    # When the key is rotated under that load
    with Load(ops_stack, headers, channel) as load:
        done = report(ops(ops_stack, "rotate-token-key", "--batch-size", "400"))
    # Then no request failed, every row reads under v2 alone and none under v1 alone
    assert load.failed == 0 and load.ok > 20, (load.failures, done["phases"])
    rows = channel_rows(ops_stack)
    assert done["rows"] == len(rows) and done["batches"] == math.ceil(len(rows) / 400)
    assert done["versions"] == {"new": 2, "retired": [1]}
    # in four phases, each rolling the workers except the rewrite, one after the other
    phases = done["phases"]
    assert [p["phase"] for p in phases] == ["stage", "promote", "rewrite", "retire"]
    assert [p["started"] for p in phases] == sorted(p["started"] for p in phases)
    assert phases[0]["decrypt_only"] is True and phases[1]["primary"] == 2
    assert phases[2]["rows"] >= len(rows) and phases[3]["retired"] == [1]
    assert len(done["rolls"]) == 3 and all(r["mode"] == "rolling" for r in done["rolls"])
    new_keys = token_keys(hsm_values(ops_stack))
    assert list(new_keys) == [2]
    tokens = [t for row in rows for t in row]
    assert all(readable(new_keys[2], t) for t in tokens)
    assert not any(readable(old_keys[1], t) for t in tokens)
    with api(ops_stack) as client:
        assert client.post(f"/api/v1/channels/{channel}/sync", headers=headers).status_code == 200


HSM_STEP = """
import json, sys
from cryptography.fernet import Fernet
from system_under_test.api import keyring as k
from system_under_test.ops.context import OpsContext
from system_under_test.ops.workers import roll_workers
ctx = OpsContext.open(sys.argv[1])
step, version = sys.argv[2], int(sys.argv[3])
label = f"{k.TOKEN_KEY_PREFIX}{version}"
out = {}
if step == "stage":
    with ctx.hsm(rw=True) as s:
        k.put_secret(s, label, s.generate_random(256), str(version).encode(), decrypt_only=True)
    out["roll"] = roll_workers(ctx).summary()
elif step == "encrypt":
    # A token under this version only, as a worker that already has it as primary writes.
    out["token"] = Fernet(k.fernet_key(ctx.secrets()[label])).encrypt(sys.argv[4].encode()).decode()
with ctx.hsm() as s:
    out["decrypt_only"] = sorted(k.read_decrypt_only(s))
print(json.dumps(out))
"""


def hsm_step(info, *args: str) -> dict[str, object]:
    """Stage a token key (and roll the workers) or encrypt under one version, in a child
    process: SoftHSM reads its configuration once per process. Prints no key."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("VOTRIZ_HSM_PIN_FILE", None)
    result = subprocess.run([sys.executable, "-c", HSM_STEP, str(info.state_dir), *args],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-800:]
    return json.loads(result.stdout)


def test_staged_token_key_is_read_by_every_worker_but_never_used_to_encrypt(ops_stack):
    # Given a channel, and the current primary token key vN
    with api(ops_stack) as client:
        _, headers = new_session(client)
        channel = new_channel(client, headers)
    primary = max(token_key_versions(hsm_values(ops_stack)))
    staged = primary + 1
    # When vN+1 is staged decrypt-only in the HSM and the workers roll (phase 1 of a rotation)
    out = hsm_step(ops_stack, "stage", str(staged))
    assert out["decrypt_only"] == [f"votriz/token-encryption/v{staged}"]
    # Then new writes are made under vN, never under the staged key
    with api(ops_stack) as client:
        assert client.put(f"/api/v1/channels/{channel}/tokens", headers=headers, json={
            "access_token": "at-staged", "refresh_token": "rt-staged"}).status_code == 200
        written = new_channel(client, headers)
    keys = token_keys(hsm_values(ops_stack))
    password = hsm_values(ops_stack)[DB_PASSWORD_LABEL].decode()
    with connect(ops_stack, password) as conn:
        rows = conn.execute("SELECT access_token_enc, refresh_token_enc FROM channels "
                            "WHERE id = ANY(%s)", ([channel, written],)).fetchall()
    tokens = [t for row in rows for t in row]
    assert len(tokens) == 4
    assert all(readable(keys[primary], t) for t in tokens)
    assert not any(readable(keys[staged], t) for t in tokens)
    # And a row under vN+1 alone (what a worker that has it as primary writes) is readable
    # by every worker (no keep-alive: the requests spread over both workers)
    token = hsm_step(ops_stack, "encrypt", str(staged), "at-under-staged")["token"]
    with connect(ops_stack, password) as conn:
        conn.execute("UPDATE channels SET access_token_enc = %s WHERE id = %s", (token, channel))
    with api(ops_stack) as client:
        answers = [client.post(f"/api/v1/channels/{channel}/sync", headers=headers).status_code
                   for _ in range(12)]
    assert answers == [200] * 12
    # When a rotation runs now (as after an interrupted one), it takes the staged key over
    done = report(ops(ops_stack, "rotate-token-key"))
    assert done["versions"] == {"new": staged, "retired": [primary]}
    assert done["phases"][0]["reused"] is True
    # Then the key may encrypt, new writes are under it, and the old version is gone
    assert hsm_step(ops_stack, "check", str(staged))["decrypt_only"] == []
    with api(ops_stack) as client:
        after = new_channel(client, headers)
        assert client.post(f"/api/v1/channels/{channel}/sync", headers=headers).status_code == 200
    keys = token_keys(hsm_values(ops_stack))
    assert list(keys) == [staged]
    with connect(ops_stack, password) as conn:
        row = conn.execute("SELECT access_token_enc, refresh_token_enc FROM channels WHERE id = %s",
                           (after,)).fetchone()
    assert all(readable(keys[staged], t) for t in row)


ROLLS = """
import json, sys
from system_under_test.ops.context import OpsContext
from system_under_test.ops.workers import roll_workers
ctx = OpsContext.open(sys.argv[1])
print(json.dumps([roll_workers(ctx).summary() for _ in range(int(sys.argv[2]))]))
"""


def test_worker_rolls_drop_no_request_through_the_edge(ops_stack):
    # Given reads (POST) and writes (PUT) in a loop through the TLS edge, from four clients
    with api(ops_stack) as client:
        _, headers = new_session(client)
        channels = [new_channel(client, headers) for _ in range(4)]
    tls = ssl.create_default_context(cafile=str(ops_stack.ca_file))
    edge = f"https://127.0.0.1:{ops_stack.ports.https}/api/v1"
    stop = threading.Event()
    answers: list[object] = []

    def loop(channel: int) -> None:
        with httpx.Client(verify=tls, timeout=30, headers={"host": "votriz.test", **headers}) as c:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 2:
                        status = c.post(f"{edge}/channels/{channel}/sync").status_code
                    else:
                        status = c.put(f"{edge}/channels/{channel}/tokens", json={
                            "access_token": f"at-{n}", "refresh_token": f"rt-{n}"}).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                answers.append(status)

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in channels]
    for thread in threads:
        thread.start()
    # When the workers are rolled (HUP) eight times in a row
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("VOTRIZ_HSM_PIN_FILE", None)
        rolled = subprocess.run([sys.executable, "-c", ROLLS, str(ops_stack.state_dir), "8"],
                                cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert rolled.returncode == 0, rolled.stderr[-500:]
    assert len(json.loads(rolled.stdout)) == 8
    # Then every request was answered 200 (no 502 from a connection a leaving worker closed)
    failed = [a for a in answers if a != 200]
    assert len(answers) > 50 and failed == [], f"{len(failed)} of {len(answers)}: {failed[:10]}"


def test_jwt_rotation_invalidates_every_session(ops_stack):
    with api(ops_stack) as client:
        email, headers = new_session(client)
        assert client.get("/api/v1/brands", headers=headers).status_code == 200
        ops(ops_stack, "rotate-jwt-secret")
        assert client.get("/api/v1/brands", headers=headers).status_code == 401
        # Logins keep working: the e-mail index does not depend on the JWT secret.
        again = client.post("/api/v1/login", json={"email": email, "password": PASSWORD})
        assert again.status_code == 200


def test_db_password_rotation_refuses_the_old_password(ops_stack):
    old = hsm_values(ops_stack)[DB_PASSWORD_LABEL].decode()
    with connect(ops_stack, old):
        pass
    ops(ops_stack, "rotate-db-password")
    new = hsm_values(ops_stack)[DB_PASSWORD_LABEL].decode()
    assert new != old
    with pytest.raises(psycopg.OperationalError):
        connect(ops_stack, old)
    with connect(ops_stack, new):
        pass
    with api(ops_stack) as client:
        new_session(client)


def test_redis_password_rotation_refuses_the_old_password(ops_stack):
    old = hsm_values(ops_stack)[REDIS_PASSWORD_LABEL].decode()
    port = load_config(ops_stack.api_config).redis_port
    ops(ops_stack, "rotate-redis-password")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password=old).ping()
    with api(ops_stack) as client:
        # Login counts attempts in Redis: it works only with the new password.
        new_session(client)


def test_backup_is_encrypted_and_the_drill_restores_it(ops_stack):
    # Given a backup
    made = report(ops(ops_stack, "backup"))
    path = ops_stack.state_dir / "backups" / str(made["file"])
    data = path.read_bytes()
    # Then it is chunked Fernet under the HSM backup key, with the row counts inside
    assert not data.startswith(b"PGDMP") and data.startswith(b"gAAAAA")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    fernet = Fernet(fernet_key(hsm_values(ops_stack)[BACKUP_KEY_LABEL]))
    with open(path, "rb") as handle:
        chunks = list(read_chunks(fernet, handle))
    assert json.loads(chunks[0])["row_counts"] == made["row_counts"]
    assert chunks[1].startswith(b"PGDMP")
    # When the drill runs, it restores exactly those counts and drops its database
    drill = report(ops(ops_stack, "restore-drill"))
    logged = json.loads((ops_stack.state_dir / "drills.log").read_text().splitlines()[-1])
    assert drill["ok"] is True and logged["ok"] is True and logged["backup"] == made["file"]
    assert {t: c["restored"] for t, c in logged["tables"].items()} == made["row_counts"]
    with connect(ops_stack, hsm_values(ops_stack)[DB_PASSWORD_LABEL].decode()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE "
                            "'votriz_drill_%'").fetchone()[0] == 0


def truncated_copy(info) -> Path:
    """A newer backup file missing its last chunk."""
    newest = max((info.state_dir / "backups").glob("votriz-*.dump.enc"))
    taken = backup_time(newest.name) + timedelta(seconds=1)
    broken = newest.with_name(f"votriz-{taken.strftime('%Y%m%dT%H%M%SZ')}.dump.enc")
    lines = newest.read_bytes().splitlines(keepends=True)
    broken.write_bytes(b"".join(lines[:-1]) if len(lines) > 1 else lines[0][: len(lines[0]) // 2])
    return broken


def test_drill_fails_on_a_truncated_backup(ops_stack):
    ops(ops_stack, "backup")
    broken = truncated_copy(ops_stack)
    try:
        result = ops(ops_stack, "restore-drill", check=False)
        logged = json.loads((ops_stack.state_dir / "drills.log").read_text().splitlines()[-1])
    finally:
        broken.unlink()
    assert result.returncode == 1 and result.stderr.startswith("error: restore-drill")
    assert logged["ok"] is False and logged["backup"] == broken.name


def test_prune_deletes_what_is_older_than_30_days(ops_stack):
    made = report(ops(ops_stack, "backup"))
    taken = backup_time(str(made["file"]))
    kept = report(ops(ops_stack, "prune-backups", "--now",
                      (taken + timedelta(days=29)).isoformat()))
    assert made["file"] in kept["kept"]
    pruned = report(ops(ops_stack, "prune-backups", "--now",
                        (taken + timedelta(days=31)).isoformat()))
    assert made["file"] in pruned["deleted"]
    assert not (ops_stack.state_dir / "backups" / str(made["file"])).exists()


# --- OPS faults ---------------------------------------------------------------------------


def test_faults_rotation_drops_requests_and_leaves_rows(ops_fault_stack):
    ops(ops_fault_stack, "seed-channels", "--count", "1000")
    with api(ops_fault_stack) as client:
        _, headers = new_session(client)
        channel = new_channel(client, headers)
    with Load(ops_fault_stack, headers, channel) as load:
        done = report(ops(ops_fault_stack, "rotate-token-key", "--batch-size", "300"))
    assert load.failed > 0
    assert done["tables"]["channels"]["skipped"] > 0
    new_key = token_keys(hsm_values(ops_fault_stack))[2]
    tokens = [t for row in channel_rows(ops_fault_stack) for t in row]
    assert sum(not readable(new_key, t) for t in tokens) > 0


def test_fault_jwt_rotation_keeps_sessions(ops_fault_stack):
    with api(ops_fault_stack) as client:
        _, headers = new_session(client)
        ops(ops_fault_stack, "rotate-jwt-secret")
        assert client.get("/api/v1/brands", headers=headers).status_code == 200


def test_fault_db_password_rotation_ignored(ops_fault_stack):
    old = hsm_values(ops_fault_stack)[DB_PASSWORD_LABEL].decode()
    ops(ops_fault_stack, "rotate-db-password")
    with connect(ops_fault_stack, old):
        pass


def test_faults_backup_plaintext_retention_broken_drill_broken(ops_fault_stack):
    made = report(ops(ops_fault_stack, "backup"))
    path = ops_fault_stack.state_dir / "backups" / str(made["file"])
    assert path.read_bytes().startswith(b"PGDMP")
    # A broken backup still "passes" the broken drill.
    broken = truncated_copy(ops_fault_stack)
    drill = ops(ops_fault_stack, "restore-drill", check=False)
    logged = json.loads((ops_fault_stack.state_dir / "drills.log").read_text().splitlines()[-1])
    assert drill.returncode == 0 and logged["ok"] is True and logged["backup"] == broken.name
    far = report(ops(ops_fault_stack, "prune-backups", "--now",
                     (backup_time(path.name) + timedelta(days=400)).isoformat()))
    assert far["deleted"] == [] and path.name in far["kept"]


def test_backup_file_is_not_base64_of_plain_dump(ops_stack):
    """The encrypted file must not merely encode the dump: decoding a line gives no PGDMP."""
    made = report(ops(ops_stack, "backup"))
    first_line = (ops_stack.state_dir / "backups" / str(made["file"])).read_bytes().split(b"\n")[1]
    assert b"PGDMP" not in base64.urlsafe_b64decode(first_line + b"=" * (-len(first_line) % 4))
