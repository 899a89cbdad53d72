"""The key search on hand-made trees and on a real child process's environment."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness.key_needles
import harness.keysearch
from harness.key_classes import load_key_classes
from harness.key_needles import shannon_entropy
from harness.keysearch import KeySearcher, search_target
from harness.probes.processes import observe_pid

SETTINGS = load_key_classes().search
TOKEN_KEY = bytes([0xFB, 0xFF, 0xBF] * 10 + [1, 2])  # differs between the base64 alphabets
FERNET_KEY = base64.urlsafe_b64encode(TOKEN_KEY).decode()
STRIPE = "sk_live_51Hq8ZxLkQ2mVb7RtY3nW0pAeCdFgHiJk"
VALUES = [("votriz/token-encryption/v1", TOKEN_KEY), ("votriz/api/stripe", STRIPE.encode())]


def searcher(**kwargs) -> KeySearcher:
    return KeySearcher(VALUES, SETTINGS, **kwargs)


def test_real_value_in_config_is_named_by_file_line_and_form(tmp_path: Path) -> None:
    config = tmp_path / "api.toml"
    config.write_text(f'listen = "x"\n\nstripe_key = "{STRIPE}"\n')
    result = searcher().search_files([config], "config")
    hit, = result.failing
    assert (hit.kind, hit.place, hit.where, hit.what) == (
        "value", "config", f"{config}:3", "votriz/api/stripe (raw)")
    # The hit never carries the value.
    assert STRIPE not in repr(result) and STRIPE not in hit.describe()


def test_every_encoding_of_a_key_is_found(tmp_path: Path) -> None:
    forms = {
        "base64": base64.b64encode(TOKEN_KEY).decode(),
        "base64url": FERNET_KEY,
        "hex": TOKEN_KEY.hex(),
        "HEX": TOKEN_KEY.hex().upper(),
    }
    for form, text in forms.items():
        (tmp_path / f"{form}.txt").write_text(f"x = {text}\n")
    result = searcher().search_files([tmp_path], "source")
    found = {hit.what for hit in result.hits}
    assert {f"votriz/token-encryption/v1 ({form})" for form in forms} <= found


def test_key_shapes_without_known_values(tmp_path: Path) -> None:
    source = tmp_path / "settings.py"
    source.write_text(
        "ANTHROPIC = 'sk-ant-api03-Zx81kQmV2bN7rT3wY0pLaEcD'\n"
        "import re\nre_compile_pattern_cache_for_everything = re.compile('x')\n"
        "JWT_SECRET = 'q8Zr3LmV9xT2bN7kW0pYaEcDfGhJ4sUi'\n"
        f"FERNET = '{base64.urlsafe_b64encode(os.urandom(32)).decode()}'\n"
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "password = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'\n"
    )
    result = KeySearcher([], SETTINGS).search_files([source], "source")
    named = sorted((hit.what, hit.where.rsplit(":", 1)[1], hit.fails) for hit in result.hits)
    assert named == [
        ("anthropic-api-key", "1", True),
        ("fernet-key", "5", True),
        ("pem-private-key", "6", False),
        ("secret-assignment", "4", True),
    ]


def test_a_key_assigned_to_a_name_of_a_secret_kind_is_found_by_its_shape(tmp_path: Path) -> None:
    # Given an environment file as Docker and systemd take one, and keys the HSM does not hold
    # (a retired version, or one never put there): found by their shape alone
    fernet = "Zx81kQmV2bN7rT3wY0pLaEcDfGhJ4sUiOq5Rt6Yu7I8="
    env = tmp_path / "api.env"
    env.write_text(
        f"VOTRIZ_TOKEN_ENCRYPTION_KEY={fernet}\n"
        "SESSION_MASTER_KEY='Qm9Zr3LmV9xT2bN7kW0pYaEcDfGhJ4sUi81x'\n"
        "VOTRIZ_BACKUP_KEY: Rk2Lp9Xw4Tq8Zm1Nb6Vc3Hs7Jd0Fg5Ya\n"
        "APP_KEY=Qm9Zr3LmV9xT2bN7kW0pYaEcDfGhJ4sUi81xRk2Lp9X=\n"
        # public values, identifiers and digests are no secrets, whatever their names
        "STRIPE_PUBLISHABLE_KEY=pk_live_51Hq8ZxLkQ2mVb7RtY3nW0pAeCdFgHiJk\n"
        "RECAPTCHA_SITE_KEY=6LcQ2mVb7RtY3nW0pAeCdFgHiJkZx81kQmV2bN7\n"
        "SSH-PUBLIC-KEY=AAAAC3NzaC1lZDI1NTE5AAAAIOkQ2mVb7RtY3nW0pAe\n"
        '{"idempotency_key":"Zq3LmV9xT2bN7kW0pYaEcDfGhJ4sUi81xQm9"}\n'
        '{"key":"sess_9Xw4Tq8Zm1Nb6Vc3Hs7Jd0Fg5YaRk2Lp"}\n'
        "KEY_ID=Zx81kQmV2bN7rT3wY0pLaEcDfGhJ4sUiOq\n"
        "Digest: SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\n"
        "KEY_SHA256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n")
    result = KeySearcher([], SETTINGS).search_files([env], "config")
    named = sorted((hit.what, hit.where.rsplit(":", 1)[1]) for hit in result.hits)
    assert named == [("fernet-key", "1"), ("fernet-key", "4"), ("secret-assignment", "2"),
                     ("secret-assignment", "3")]
    # And the same in a process's environment, where each variable is searched as NAME=value
    hits = KeySearcher([], SETTINGS).scan(f"VOTRIZ_TOKEN_ENCRYPTION_KEY={fernet}".encode(), "env",
                                          "api $VOTRIZ_TOKEN_ENCRYPTION_KEY", line_numbers=False)
    assert [hit.what for hit in hits] == ["fernet-key"]


def test_value_hit_suppresses_the_shape_hit_at_the_same_place(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text(f"STRIPE_KEY={STRIPE}\n")
    result = searcher().search_files([tmp_path], "config")
    assert [hit.kind for hit in result.hits] == ["value"]


def test_binary_excluded_and_skipped_dirs(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2" + STRIPE.encode())
    evidence = tmp_path / "reports"
    evidence.mkdir()
    (evidence / "e.json").write_text(STRIPE)
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "x.txt").write_text(STRIPE)
    (tmp_path / "link").symlink_to(tmp_path / "blob.bin")
    result = searcher(exclude=[evidence]).search_files([tmp_path], "source")
    assert result.hits == ()
    assert (str(tmp_path / "blob.bin"), "binary file") in result.skipped
    # Only the binary file is a gap in the coverage; excluded paths are deliberate.
    assert result.binary_skipped == (str(tmp_path / "blob.bin"),)
    assert any(path == str(evidence) for path, _ in result.skipped)
    assert result.files_searched == 0


def test_large_file_is_bounded_and_reported_truncated(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(b"a" * 100 + STRIPE.encode() + b"\n" + b"b" * 200 + STRIPE.encode())
    settings = SETTINGS.model_copy(update={"max_log_bytes": 200})
    result = KeySearcher(VALUES, settings).search_files([tmp_path], "log")
    assert [hit.where for hit in result.hits] == [f"{big}@100"]
    assert result.truncated == (str(big),)
    assert result.truncated_at == ((str(big), 200),)


def test_missing_path_is_an_error_not_a_silent_pass(tmp_path: Path) -> None:
    result = searcher().search_files([tmp_path / "nope"], "config")
    assert result.errors == (f"{tmp_path / 'nope'}: not found",)


def test_environment_of_a_real_process_names_the_variable(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             env={"PATH": os.environ.get("PATH", ""), "VOTRIZ_TOKEN_KEY": FERNET_KEY,
                                  "HARMLESS": "yes"})
    try:
        time.sleep(0.2)
        seen = observe_pid("api", child.pid)
        assert seen is not None and "VOTRIZ_TOKEN_KEY" in seen.variable_names()
        assert FERNET_KEY not in repr(seen)
        result = searcher().search_processes([seen])
    finally:
        child.kill()
        child.wait()
    hit, = result.hits
    assert hit.where == f"api[pid {child.pid} python3] $VOTRIZ_TOKEN_KEY" or \
        hit.where.endswith("$VOTRIZ_TOKEN_KEY")
    assert hit.what == "votriz/token-encryption/v1 (base64url)" and hit.place == "env"


@pytest.mark.parametrize("pin", [b"4821", b"48213"])
def test_a_short_pin_given_whole_to_a_secrets_name_is_found_and_nowhere_else(tmp_path: Path, pin: bytes) -> None:
    # Given a 4- or 5-digit HSM PIN in a real process's environment and in a config file
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             env={"PATH": os.environ.get("PATH", ""), "SOFTHSM_USER_PIN": pin.decode(),
                                  "WORKERS": pin.decode()})
    (tmp_path / "app.toml").write_bytes(b'port = ' + pin + b'\nuser_pin = "' + pin + b'"\n'
                                        b"note = see ticket " + pin + b"\n")
    short = KeySearcher([("HSM user PIN", pin)], SETTINGS)
    try:
        time.sleep(0.2)
        seen = observe_pid("api", child.pid)
        assert seen is not None
        env = short.search_processes([seen])
    finally:
        child.kill()
        child.wait()
    files = short.search_files([tmp_path], "config")
    # Then it is named where a secret's name holds it whole: not as a port, a count or in prose
    assert [(h.what, h.where.rsplit(" ", 1)[-1]) for h in env.hits] == [("HSM user PIN (raw)", "$SOFTHSM_USER_PIN")]
    assert [h.where for h in files.hits] == [f"{tmp_path / 'app.toml'}:2"]


#: Where a 4-digit PIN is given to a secret's name (found), and where the same digits are not.
GIVEN = ['SOFTHSM_USER_PIN={}', 'pin: "{}"', '{{"pin": "{}"}}', '{{"ts":1,"pin":"{}"}}',
         'level=info pin={} slot=0', 'pin="{}" other="x"', 'SOFTHSM_USER_PIN={} # hsm', '--pin {}',
         '--pin={}', 'export PIN={}', 'PIN = "{}"', 'userPin: {}', 'db.password={}', 'ENV SOFTHSM_PIN {}',
         'PIN_CODE={}', 'pinCode={}', 'passcode={}', 'PIN1={}', 'SO_PIN_2={}',
         '{{"log":"SOFTHSM_USER_PIN={}\\n","stream":"stdout"}}', '"msg":"pin=\\"{}\\""']
NOT_GIVEN = ['port = {}', 'x {} y', 'PIN={}0', 'max_keys={}', 'monkey={}', 'spinner_delay={}',
             'author_id: {}', 'passes: {}', 'tokens_per_minute = {}', 'key: {}', 'max_tokens = {}',
             'ping_interval: {}', 'output_tokens={}', '{}', '={}', 'pin {}', 'PIN=1{}', 'pin={}.5',
             'exit_code={}', 'zip_code={}', 'ENV PORT {}', 'FOOENV PIN {}']


@pytest.mark.parametrize(("line", "found"), [(line, True) for line in GIVEN] + [(line, False) for line in NOT_GIVEN])
def test_a_short_pin_is_found_only_where_a_secrets_name_is_given_it_whole(line: str, found: bool) -> None:
    hits = KeySearcher([("HSM user PIN", b"4821")], SETTINGS).scan(line.format("4821").encode(), "config", "f",
                                                                    line_numbers=True)
    assert [h.what for h in hits] == (["HSM user PIN (raw)"] if found else []), line


def test_short_hits_are_bounded_and_never_slow(tmp_path: Path) -> None:
    short = KeySearcher([("HSM user PIN", b"4821")], SETTINGS)
    # A value followed by a long run of blanks, and a file of nothing but hits, each numbered by line
    started = time.monotonic()
    assert short.scan(b"4821" + b" " * 1_000_000 + b"x", "config", "f", line_numbers=True) == []
    many = short.scan(b"pin=4821\n" * 200_000, "config", "f", line_numbers=True)
    assert len(many) == harness.key_needles.MAX_SHORT_HITS and many[-1].where == "f:1000"
    assert time.monotonic() - started < 5
    # And a layer's .env is searched as a config file is
    layer = tmp_path / "diff" / "srv"
    layer.mkdir(parents=True)
    (layer / ".env").write_text("SOFTHSM_USER_PIN=4821\n")
    hit, = short.search_layers([("img:1 layer 1", tmp_path / "diff")]).hits
    assert (hit.what, hit.where) == ("HSM user PIN (raw)", "img:1 layer 1 /srv/.env@17")


def test_hits_of_known_values_are_bounded_and_numbered_in_one_pass() -> None:
    # Given a log of one 6-digit PIN on every line, and a file of a value that holds another
    pin = KeySearcher([("HSM user PIN", b"482113")], SETTINGS)
    started = time.monotonic()
    hits = pin.scan(b"482113\n" * 2_000_000, "log", "app.log", line_numbers=False)
    assert len(hits) == harness.keysearch.MAX_HITS_PER_BUFFER
    inner = "k3yV4lu3-" + "a" * 30
    nested = KeySearcher([("inner", inner.encode()), ("outer", f"Bearer.{inner}.sig".encode())], SETTINGS)
    found = nested.scan(f"x=Bearer.{inner}.sig\n".encode() * 20_000, "config", "f", line_numbers=True)
    # Then the search stops at its bound, and numbering nested hits is one pass, not one per hit
    assert time.monotonic() - started < 10
    assert {h.where for h in found if h.what.startswith("outer")} >= {"f:1", "f:5000"}


def test_search_target_covers_source_config_logs(tmp_path: Path) -> None:
    src, conf, logs = tmp_path / "src", tmp_path / "conf", tmp_path / "logs"
    for folder in (src, conf, logs):
        folder.mkdir()
    (src / "ok.py").write_text("print('hello')\n")
    (conf / "api.toml").write_text("x = 1\n")
    (logs / "api.log").write_text("GET / 200\n" + f"key={TOKEN_KEY.hex()}\n")
    result = search_target([src], [conf], logs, None, VALUES, SETTINGS)
    assert [(hit.place, hit.where) for hit in result.hits] == [("log", f"{logs / 'api.log'}@14")]
    assert result.files_searched == 3


# No per-example deadline: each example builds a searcher (its automaton), which took over
# hypothesis's 200 ms at load 10; this property is about crashing, not speed.
@settings(deadline=None)
@given(st.binary(max_size=2000))
def test_search_never_crashes(data: bytes) -> None:
    for hit in searcher().scan(data, "log", "x", line_numbers=True):
        assert hit.fingerprint.startswith("sha256:")


def test_entropy() -> None:
    assert shannon_entropy(b"") == 0.0
    assert shannon_entropy(b"aaaa") == 0.0
    assert shannon_entropy(bytes(range(16))) == pytest.approx(4.0)


def test_image_layers_are_searched_whole_by_value_and_by_shape_outside_package_trees(tmp_path: Path) -> None:
    # Given two layers: a binary blob far past the per-file bound with the raw key near its
    # end, an OS file full of key-shaped strings that are no real key, a certificate bundle
    # with a line of a Fernet key's shape, and the service's own key file holding a key the
    # HSM does not hold (a retired version)
    lower, upper = tmp_path / "lower" / "diff", tmp_path / "upper" / "diff"
    for folder in (lower / "usr" / "lib", upper / "usr" / "share" / "doc", upper / "etc" / "ssl",
                   upper / "etc" / "votriz", upper / "opt" / "app" / "lib" / "python3.11" / "site-packages",
                   upper / "usr" / "src" / "app"):
        folder.mkdir(parents=True)
    blob = lower / "usr" / "lib" / "libbig.so"
    with blob.open("wb") as stream:
        stream.write(b"\0ELF" + b"\0" * (SETTINGS.max_file_bytes + 10))
        stream.write(TOKEN_KEY)
    shaped = f'api_key = "{STRIPE[:8]}' + "Zx9Qw" * 8 + '"\n'
    (upper / "usr" / "share" / "doc" / "example.conf").write_text(shaped)
    (upper / "opt" / "app" / "lib" / "python3.11" / "site-packages" / "vectors.py").write_text(shaped)
    retired = base64.urlsafe_b64encode(bytes(range(7, 39))).decode()
    (upper / "etc" / "ssl" / "bundle.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2\n"
        "Zx81kQmV2bN7rT3wY0pLaEcDfGhJ4sUiOq5Rt6Yu7I8=\n-----END CERTIFICATE-----\n")
    (upper / "etc" / "votriz" / "token.key").write_text(retired + "\n")
    (upper / "usr" / "src" / "app" / "settings.py").write_text(f'FERNET_KEY = "{retired}"\n')
    layers = [("img:1 layer 2 (upper)", upper), ("img:1 layer 1 (lower)", lower)]
    # When the layers are searched
    result = searcher().search_layers(layers)
    # Then the key is found by value, at its byte offset in the named layer's file, the
    # retired key by its shape, and nothing in the package trees or the certificate
    value, = (hit for hit in result.hits if hit.kind == "value")
    assert (value.place, value.what) == ("image", "votriz/token-encryption/v1 (raw)")
    assert value.where == f"img:1 layer 1 (lower) /usr/lib/libbig.so@{SETTINGS.max_file_bytes + 14}"
    shapes = sorted((hit.place, hit.what, hit.where, hit.fails) for hit in result.hits if hit.kind == "shape")
    assert shapes == [("image", "fernet-key", "img:1 layer 2 (upper) /etc/votriz/token.key@0", True),
                      ("image", "fernet-key", "img:1 layer 2 (upper) /usr/src/app/settings.py@14", True)]
    assert result.files_searched == 6 and not result.truncated and not result.errors


@pytest.mark.parametrize(("origin", "found"), [
    ({"url": "file:///src/acme", "dir_info": {}}, True),
    ({"url": "git+https://git.example/acme", "vcs_info": {"vcs": "git", "commit_id": "abc"}}, True),
    ({"url": "file:///wheels/acme-1.0-py3-none-any.whl", "archive_info": {}}, False),
    (None, False),
], ids=["local-directory", "vcs", "wheel-file", "index"])
def test_the_operators_own_distribution_in_site_packages_is_searched_by_shape(
        tmp_path: Path, origin: dict | None, found: bool) -> None:
    # Given a layer where the service is pip-installed into site-packages with a key the HSM does
    # not hold in its settings, and a third-party package there with a key-shaped test vector
    layer = tmp_path / "diff"
    site = layer / "usr" / "local" / "lib" / "python3.11" / "site-packages"
    for folder in (site / "acme_api", site / "acme_api-1.0.dist-info", site / "vendor_lib"):
        folder.mkdir(parents=True)
    retired = base64.urlsafe_b64encode(bytes(range(7, 39))).decode()
    (site / "acme_api" / "settings.py").write_text(f'FERNET_KEY = "{retired}"\n')
    (site / "vendor_lib" / "vectors.py").write_text(f'TEST_KEY = "{retired}"\n')
    (site / "acme_api-1.0.dist-info" / "RECORD").write_text(
        "acme_api/settings.py,sha256=x,40\nacme_api-1.0.dist-info/RECORD,,\n../../../bin/acme,sha256=y,9\n")
    if origin is not None:
        (site / "acme_api-1.0.dist-info" / "direct_url.json").write_text(json.dumps(origin))
    # When the layer is searched
    result = searcher().search_layers([("acme:1 layer 1", layer)])
    # Then the operator's own file is searched by shape (a local directory or a VCS), a package
    # from an index or a wheel file is not, nor is the third-party package
    shapes = [hit.where for hit in result.hits if hit.kind == "shape"]
    own = "acme:1 layer 1 /usr/local/lib/python3.11/site-packages/acme_api/settings.py@14"
    assert shapes == ([own] if found else [])


def test_a_text_file_too_large_to_read_whole_is_searched_by_shape_window_by_window(tmp_path: Path) -> None:
    # Given a 20 MiB log baked into a layer: a key the HSM does not hold across the edge of the
    # first 8 MiB window, another near the end, and a certificate across the second window's edge
    from harness import keysearch
    window = keysearch._SHAPE_WINDOW
    retired = base64.urlsafe_b64encode(bytes(range(7, 39))).decode()
    other = base64.urlsafe_b64encode(bytes(range(40, 72))).decode()
    certificate = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2\n"
                   "Zx81kQmV2bN7rT3wY0pLaEcDfGhJ4sUiOq5Rt6Yu7I8=\n-----END CERTIFICATE-----\n")
    first = f'FERNET_KEY = "{retired}"\n'.encode()
    last = f'SECRET_KEY = "{other}"\n'.encode()
    layer = tmp_path / "diff"
    (layer / "var" / "log").mkdir(parents=True)
    body = bytearray(b"x" * (20 << 20))
    at_first = window - 20
    body[at_first:at_first + len(first)] = first
    at_cert = 2 * window - 40
    body[at_cert:at_cert + len(certificate)] = certificate.encode()
    at_last = (20 << 20) - 200
    body[at_last:at_last + len(last)] = last
    (layer / "var" / "log" / "app.log").write_bytes(bytes(body))
    # When the layer is searched
    result = searcher().search_layers([("img:1 layer 1", layer)])
    # Then both keys are found by shape at their offsets in the file, once each; the certificate is not
    shapes = sorted(hit.where for hit in result.hits if hit.kind == "shape")
    assert shapes == sorted([f"img:1 layer 1 /var/log/app.log@{at_first + 14}",
                             f"img:1 layer 1 /var/log/app.log@{at_last + 14}"])
    assert not result.truncated_at
    # And past the bound on text searched by shape (max_log_bytes), the rest is a gap, said
    bounded = KeySearcher(VALUES, SETTINGS.model_copy(update={"max_log_bytes": 16 << 20}))
    result = bounded.search_layers([("img:1 layer 1", layer)])
    assert [hit.where for hit in result.hits] == [f"img:1 layer 1 /var/log/app.log@{at_first + 14}"]
    assert result.truncated_at == (("img:1 layer 1 /var/log/app.log (by key shape; by value whole)", 16 << 20),)


def test_a_certificate_line_of_a_key_shape_is_no_key_anywhere(tmp_path: Path) -> None:
    # Given a CA bundle among the configuration files, one line of a certificate Fernet-shaped
    line = "Zx81kQmV2bN7rT3wY0pLaEcDfGhJ4sUiOq5Rt6Yu7I8="
    bundle = tmp_path / "ca.pem"
    bundle.write_text(f"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmg\n{line}\n-----END CERTIFICATE-----\n"
                      f"{line}\n")
    # Then only the same string outside the certificate is a hit
    result = KeySearcher([], SETTINGS).search_files([bundle], "config")
    assert [(hit.what, hit.where) for hit in result.hits] == [("fernet-key", f"{bundle}:5")]
    # And a header that no certificate body follows (a log line quoting one) hides nothing
    # after it, and many of them cost one pass (a lazy match to the next END was quadratic:
    # 18 s for 256 KiB of headers)
    log = (b"WARN bad input: -----BEGIN CERTIFICATE----- (truncated)\n" + line.encode() + b"\n"
           + bundle.read_bytes())
    assert [hit.where for hit in KeySearcher([], SETTINGS).scan(log, "log", "api.log", line_numbers=True)] \
        == ["api.log:2", "api.log:7"]
    started = time.monotonic()
    KeySearcher([], SETTINGS).scan(b"-----BEGIN CERTIFICATE-----\n" * 40_000, "log", "x", line_numbers=False)
    assert time.monotonic() - started < 2


def test_container_logs_are_searched_and_a_truncated_one_is_a_gap(tmp_path: Path) -> None:
    logs = [("docker logs api", f"boot\nkey={FERNET_KEY}\n".encode(), False),
            ("docker logs edge", b"x" * 100, True)]
    result = searcher().search_logs(logs)
    hit, = result.failing
    assert (hit.place, hit.where) == ("log", "docker logs api@9")
    assert result.truncated_at == (("docker logs edge", 100),)


# Symbolic links, loops and special files: a Kubernetes secret volume is a tree of links
# (NAME -> ..data/NAME, ..data -> ..2024_01_01_00_00_00.1/), and a FIFO must never hang the walk.

def _secret_volume(tmp_path: Path) -> Path:
    """A Kubernetes-style secret volume outside the root, linked into it; the key only there."""
    volume = tmp_path / "volume"
    timestamped = volume / "..2026_12_07_00_00_00.1"
    timestamped.mkdir(parents=True)
    (timestamped / "token-key").write_text(f"{FERNET_KEY}\n")
    (volume / "..data").symlink_to(timestamped.name)
    (volume / "token-key").symlink_to("..data/token-key")
    return volume


def test_a_key_reached_only_through_a_symlinked_file_is_found(tmp_path: Path) -> None:
    # Given a configuration root whose only file is a link to a file outside it holding the key
    volume = _secret_volume(tmp_path)
    root = tmp_path / "conf"
    root.mkdir()
    (root / "token-key").symlink_to(volume / "token-key")
    # When the root is searched
    result = searcher().search_files([root], "config")
    # Then the key is found under the link's path, and the link is counted as followed
    hit, = result.failing
    assert hit.where == f"{root / 'token-key'}:1" and hit.what == "votriz/token-encryption/v1 (base64url)"
    assert result.links_followed == (str(root / "token-key"),) and result.gaps == ()
    assert result.files_searched == 1


def test_a_key_reached_through_a_symlinked_directory_and_root_is_found(tmp_path: Path) -> None:
    # Given a root that is itself a link to the secret volume (links within it too)
    volume = _secret_volume(tmp_path)
    root = tmp_path / "secrets"
    root.symlink_to(volume)
    # When it is searched
    result = searcher().search_files([root], "config")
    # Then the file is searched once (the ..data directory and the top-level link lead to it)
    assert [hit.where for hit in result.failing] == [f"{root / '..2026_12_07_00_00_00.1' / 'token-key'}:1"]
    assert result.files_searched == 1 and result.gaps == ()
    assert set(result.links_followed) == {str(root), str(root / "..data"), str(root / "token-key")}


def test_a_directory_link_loop_is_walked_once(tmp_path: Path) -> None:
    # Given a directory holding a key and a link back to itself
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.env").write_text(f"STRIPE={STRIPE}\n")
    (tmp_path / "src" / "again").symlink_to("..")
    (tmp_path / "src" / "self").symlink_to(".")
    # When it is searched
    result = searcher().search_files([tmp_path / "src"], "source")
    # Then it ends, with the key found exactly once
    assert [hit.where for hit in result.failing] == [f"{tmp_path / 'src' / 'app.env'}:1"]
    assert result.gaps == ()


def test_a_link_loop_and_a_dangling_link_are_gaps(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere" / "key")
    (tmp_path / "ok.txt").write_text("hello\n")
    result = searcher().search_files([tmp_path], "config")
    assert result.hits == () and result.files_searched == 1
    assert sorted((gap.path, gap.kind) for gap in result.gaps) == [
        (str(tmp_path / "a"), "link loop"), (str(tmp_path / "b"), "link loop"),
        (str(tmp_path / "gone"), "dangling link")]
    gone = next(gap for gap in result.gaps if gap.kind == "dangling link")
    assert gone.describe() == f"{tmp_path / 'gone'} (dangling link: -> {tmp_path / 'nowhere' / 'key'})"


def test_a_fifo_is_a_gap_and_never_blocks(tmp_path: Path) -> None:
    # Given a FIFO with no writer, directly and behind a link, and a socket
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "to-pipe").symlink_to("pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "api.sock"))
    try:
        started = time.monotonic()
        result = searcher().search_files([tmp_path], "config")
        # Then it ends at once, with the FIFO (once) and the socket as gaps of their kind
        assert time.monotonic() - started < 5
    finally:
        server.close()
    assert sorted((gap.path, gap.kind) for gap in result.gaps) == [
        (str(tmp_path / "api.sock"), "socket"), (str(tmp_path / "pipe"), "fifo")]
    assert result.files_searched == 0


def test_a_fifo_in_place_of_a_file_is_refused_by_fstat(tmp_path: Path) -> None:
    # A file replaced by a FIFO between the walk and the read is opened without blocking.
    os.mkfifo(tmp_path / "pipe")
    gap = searcher()._read(tmp_path / "pipe", 100)
    assert not isinstance(gap, bytes) and gap.kind == "fifo"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_a_gap(tmp_path: Path) -> None:
    secret = tmp_path / "secret.env"
    secret.write_text(f"K={STRIPE}\n")
    secret.chmod(0)
    try:
        result = searcher().search_files([tmp_path], "config")
    finally:
        secret.chmod(0o600)
    gap, = result.gaps
    assert (gap.path, gap.kind) == (str(secret), "unreadable") and result.files_searched == 0


def test_a_link_into_an_excluded_directory_is_skipped_not_searched(tmp_path: Path) -> None:
    evidence = tmp_path / "reports"
    evidence.mkdir()
    (evidence / "e.json").write_text(STRIPE)
    root = tmp_path / "conf"
    root.mkdir()
    (root / "e.json").symlink_to(evidence / "e.json")
    result = searcher(exclude=[evidence]).search_files([root], "config")
    assert result.hits == () and result.gaps == ()
    assert (str(root / "e.json"), "excluded (link into harness evidence or HSM token store)") in result.skipped


# --- a file swapped between the listing and the read ---------------------------------------------


def _to_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_a_config_file_swapped_for_a_fifo_after_the_walk_is_a_gap_not_a_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a config file the walk lists as regular, replaced by a FIFO (no writer) before the read
    (tmp_path / "app.env").write_text(f"K={STRIPE}\n")
    walk = KeySearcher._walk

    def walk_then_swap(self: KeySearcher, roots: Sequence[Path]) -> Any:
        listed = walk(self, roots)
        for path in listed.files:
            _to_fifo(path)
        return listed

    monkeypatch.setattr(KeySearcher, "_walk", walk_then_swap)
    # When the files are searched
    started = time.monotonic()
    result = searcher().search_files([tmp_path], "config")
    # Then it ends at once with the FIFO as a gap, and nothing is counted as searched
    assert time.monotonic() - started < 2
    assert [(gap.path, gap.kind) for gap in result.gaps] == [(str(tmp_path / "app.env"), "fifo")]
    assert result.files_searched == 0 and result.hits == ()


@pytest.mark.parametrize("size", [100, 9 << 20], ids=["whole", "streamed"])
def test_an_image_file_swapped_after_the_layer_listing_is_an_error_not_a_hang(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    # Given a layer file (read whole, or streamed when large) that becomes a FIFO after it is
    # listed, and another that becomes a link to a file holding the key
    layer = tmp_path / "diff"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc" / "a.bin").write_bytes(b"\0" * size)
    (layer / "etc" / "b.bin").write_bytes(b"\0" * size)
    (tmp_path / "key.bin").write_bytes(TOKEN_KEY)
    listed = harness.keysearch.layer_files

    def listing_then_swap(root: str, errors: list[str]) -> Iterator[tuple[str, int]]:
        for path, listed_size in listed(root, errors):
            if path.endswith("a.bin"):
                _to_fifo(Path(path))
            else:
                Path(path).unlink()
                Path(path).symlink_to(tmp_path / "key.bin")
            yield path, listed_size

    monkeypatch.setattr(harness.keysearch, "layer_files", listing_then_swap)
    # When the layer is searched
    started = time.monotonic()
    result = searcher().search_layers([("img:1 layer 1", layer)])
    # Then it ends at once: both are errors naming what was found in the file's place, no key is
    # reported from the link's target, and nothing is counted as searched
    assert time.monotonic() - started < 2
    assert sorted(result.errors) == [
        "img:1 layer 1: img:1 layer 1 /etc/a.bin: a FIFO when opened, not a regular file",
        "img:1 layer 1: img:1 layer 1 /etc/b.bin: a symbolic link when opened (not followed)"]
    assert result.hits == () and result.files_searched == 0
