"""The local backend without servers: fault handling, prerequisites, rendered configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.profile import parse_profile
from system_under_test.common import mailbox
from system_under_test.common.edge import EDGE_FAULTS, render_config
from system_under_test.common.pki import pki_paths
from system_under_test.common.profile import Ports, render_api_config, render_target_profile
from system_under_test.faults import FAULTS, Layer
from system_under_test.faults import api_layer_faults as api_faults
from system_under_test.local import stack
from system_under_test.local.stack import StackError, down, up
from system_under_test.provision import plan

PORTS = Ports(https=18443, http=18080, postgres=15432, redis=16379, fakes=19443,
              fakes_plaintext=19080)
STATE = Path("/tmp/sut-stack-example")


def test_unknown_fault_is_a_value_error_naming_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown fault.*no-such-fault.*known: .*hsts-missing"):
        up(tmp_path / "state", ["no-such-fault"])
    assert not (tmp_path / "state").exists()


def test_missing_binary_names_the_debian_package(tmp_path):
    with pytest.raises(StackError) as raised:
        up(tmp_path / "state", search_path=[str(tmp_path)])

    assert str(raised.value) == "initdb not found: apt-get install postgresql-15"
    assert "\n" not in str(raised.value)


def test_missing_nginx_names_nginx_light():
    # Only nginx is absent: every other binary is on the remaining directories.
    search = [d for d in stack.BINARY_SEARCH_PATH if d not in ("/usr/sbin", "/sbin")]

    with pytest.raises(StackError, match=r"^nginx not found: apt-get install nginx-light$"):
        stack.check_prerequisites(search)


def test_edge_fault_set_is_the_registry_s():
    assert {f.name for f in FAULTS.values() if f.layer is Layer.EDGE} == set(EDGE_FAULTS)


def test_api_toml_lists_api_and_ops_faults_only():
    chosen = ["hsts-missing", "token-plaintext", "backup-plaintext", "key-in-env"]

    config = tomllib.loads(render_api_config(STATE, PORTS, plan(chosen, "local")))

    assert config["faults"] == ["backup-plaintext", "token-plaintext"]
    assert api_faults(chosen) == ["backup-plaintext", "token-plaintext"]


def test_clean_api_toml_is_https_only_and_secret_free():
    config = tomllib.loads(render_api_config(STATE, PORTS, plan([], "local")))

    for key in ("llm_base_url", "resend_base_url", "platform_base_url"):
        assert config[key].startswith("https://127.0.0.1:19443/")
    assert "password" not in config["database_dsn"]
    assert "stripe_api_key" not in config and "redis_password_file" not in config


@pytest.mark.parametrize(("fault", "key"), [("llm-plaintext", "llm_base_url"),
                                            ("resend-plaintext", "resend_base_url")])
def test_outbound_plaintext_faults_point_at_the_decoy(fault, key):
    config = tomllib.loads(render_api_config(STATE, PORTS, plan([fault], "local")))

    assert config[key].startswith("http://127.0.0.1:19080/")


def test_clean_nginx_config():
    text = render_config(STATE, pki_paths(STATE / "pki"), https_port=18443,
                         http_port=18080)

    assert "ssl_protocols TLSv1.3;" in text
    assert 'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;' \
        in text
    assert "server_tokens off;" in text
    assert "return 301 https://votriz.test:18443$request_uri;" in text
    assert text.count("proxy_pass") == 1


@pytest.mark.parametrize(("fault", "present", "absent"), [
    ("tls12-accepted", "ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.3;"),
    ("hsts-missing", "X-Frame-Options", "Strict-Transport-Security"),
    ("hsts-short", '"max-age=86400" always', "includeSubDomains"),
    ("security-headers-missing", "server_tokens on;", "Content-Security-Policy"),
    ("http-serves-content", "proxy_pass", "return 301"),
])
def test_each_edge_fault_changes_only_its_lines(fault, present, absent):
    text = render_config(STATE, pki_paths(STATE / "pki"), https_port=18443,
                         http_port=18080, faults=[fault])

    assert present in text
    assert absent not in text


def test_target_profile_validates_against_the_harness_model():
    state = STATE
    pid_files = {name: state / "run" / f"{name}.pid" for name in ("api", "nginx", "postgres")}

    profile = parse_profile(render_target_profile(state, PORTS, pid_files,
                                                  nginx_config=state / "nginx" / "nginx.conf"))

    assert profile.backend == "local"
    assert (profile.edge.host, profile.edge.address) == ("votriz.test", "127.0.0.1")
    assert (profile.edge.https_port, profile.edge.http_port) == (18443, 18080)
    assert profile.database.dsn.endswith("user=votriz_auditor")
    assert profile.hsm.env == {"SOFTHSM2_CONF": str(state / "softhsm2.conf")}
    assert profile.redis.password_hsm_label == "votriz/redis/password"
    assert profile.capture.plaintext_port == 19080
    assert profile.operations.allow_destructive
    assert profile.operations.rotate_token_key[-3:] == ("rotate-token-key", "--state-dir",
                                                        str(state))


def test_down_of_a_missing_dir_is_a_no_op(tmp_path):
    down(tmp_path / "never-created")
    down(tmp_path / "never-created")


def test_down_refuses_a_directory_up_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")

    with pytest.raises(StackError, match="not created by up"):
        down(tmp_path)

    assert (tmp_path / "precious.txt").exists()


def test_up_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "something").write_text("x")

    with pytest.raises(StackError, match="not empty"):
        up(tmp_path)


def test_the_local_profile_names_the_auditors_mailbox_read_over_imaps() -> None:
    # Given a stack with a mailbox port
    state = STATE
    text = render_target_profile(state, Ports(**{**PORTS.__dict__, "mailbox": 19993}),
                                 {"api": state / "run" / "gunicorn.pid"},
                                 nginx_config=state / "nginx" / "nginx.conf")
    box = parse_profile(text).mailbox
    # Then the profile reads it on loopback with the stack's CA, its password from a file
    assert box is not None
    assert (box.host, box.port, box.user, box.folder) == ("127.0.0.1", 19993, "audit", "INBOX")
    assert box.address == mailbox.ADDRESS and box.trust_anchor == state / "pki" / "ca.pem"
    assert box.password.file == state / "secrets" / "mailbox-password"
    # And a stack without one writes no [mailbox]
    assert parse_profile(render_target_profile(state, PORTS, {}, nginx_config=state / "n.conf")).mailbox is None


def test_the_mailbox_is_imaps_only_and_delivers_plus_addresses_to_its_one_user() -> None:
    layout = mailbox.MailboxLayout(host=STATE / "mail", base=Path("/var/lib/votriz/mail"))
    text = mailbox.render_config(layout, user="votriz", group="votriz", listen="*", port=9993,
                                 cert=Path("/c.pem"), key=Path("/k.pem"))
    # Plain IMAP closed, TLS required for every login, the paths as Dovecot sees them
    for line in ("ssl = required", "disable_plaintext_auth = yes", "port = 0", "port = 9993",
                 "recipient_delimiter = +", "ssl_key = </k.pem", "base_dir = /var/lib/votriz/mail/run",
                 "default_login_user = votriz"):
        assert line in text, line
    assert layout.lmtp_socket == Path("/var/lib/votriz/mail/run/lmtp")
