"""HSM provisioning: the token, its PIN files and every key object's attributes."""

from __future__ import annotations

import stat

import pytest

from system_under_test.common import softhsm

pytestmark = pytest.mark.integration

BYTE_KEYS = {softhsm.TOKEN_KEY_V1, softhsm.JWT_SIGNING, softhsm.EMAIL_INDEX, softhsm.BACKUP_KEY}


@pytest.fixture(scope="module")
def token(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("hsm-state")
    token = softhsm.init_token(state_dir)
    softhsm.provision_keys(token, softhsm.generate_values())
    return token


@pytest.fixture(scope="module")
def objects(token):
    return {row["label"]: row for row in softhsm.inspect_objects(token)}


def test_pins_are_in_0600_files(token):
    for pin_file in (token.pin_file, token.so_pin_file):
        assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
        assert len(pin_file.read_text().strip()) >= 16
    assert token.pin_file.read_text() != token.so_pin_file.read_text()


def test_config_points_at_the_state_token_dir(token):
    assert f"directories.tokendir = {token.token_dir}" in token.conf.read_text()
    assert any(token.token_dir.iterdir())


def test_every_contract_label_is_one_secret_key_object(objects):
    assert set(objects) == set(softhsm.ALL_LABELS)
    assert all(label.startswith(softhsm.KEY_NAMESPACE) for label in objects)


@pytest.mark.parametrize("label", softhsm.ALL_LABELS)
def test_key_attributes_match_the_contract(objects, label):
    row = objects[label]

    assert row["class"] == "SECRET_KEY"
    assert row["key_type"] == "GENERIC_SECRET"
    assert (row["token"], row["private"]) == (True, True)
    # Readable at process start, by design (CONTRACT.md; the harness reports it).
    assert (row["sensitive"], row["extractable"]) == (False, True)
    if label in BYTE_KEYS:
        assert row["value_len"] == 32


def test_token_encryption_key_carries_its_version_as_id(objects):
    assert objects[softhsm.TOKEN_KEY_V1]["id"] == "1"
    assert objects[softhsm.JWT_SIGNING]["id"] == ""


def test_provider_keys_have_realistic_prefixes(token):
    values = softhsm.read_values(token, [softhsm.ANTHROPIC, softhsm.FAL, softhsm.RESEND,
                                         softhsm.STRIPE])

    assert values[softhsm.ANTHROPIC].startswith(b"sk-ant-api03-")
    assert values[softhsm.FAL].startswith(b"fal_")
    assert values[softhsm.RESEND].startswith(b"re_")
    assert values[softhsm.STRIPE].startswith(b"sk_live_")


def test_reading_a_missing_label_leaves_it_out(token):
    assert softhsm.read_values(token, ["votriz/does-not-exist"]) == {}


def test_a_token_can_leave_a_label_unprovisioned(tmp_path):
    # Given the values without the Redis password (the key-not-in-hsm fault)
    token = softhsm.init_token(tmp_path)
    values = softhsm.generate_values()
    del values[softhsm.REDIS_PASSWORD]

    # When they are provisioned
    softhsm.provision_keys(token, values)

    # Then the token has every other label and not that one
    labels = {row["label"] for row in softhsm.inspect_objects(token)}
    assert labels == set(softhsm.ALL_LABELS) - {softhsm.REDIS_PASSWORD}
