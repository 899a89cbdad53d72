"""Target profiles: valid ones load, every bad one is one precise line per problem."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.profile import ProfileError, SecretSource, load_profile, parse_profile

MINIMAL = 'name = "prod"\n[edge]\nhost = "app.votriz.com"\n'


def test_minimal_profile_has_safe_defaults() -> None:
    profile = parse_profile(MINIMAL)
    assert profile.backend == "remote"
    assert profile.edge.https_port == 443 and profile.edge.http_port == 80
    assert profile.operations.allow_destructive is False
    assert profile.edge.base_url == "https://app.votriz.com"


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\n', "<profile>: edge: Field required"),
    ("surprise = 1\n" + MINIMAL, "<profile>: surprise: unknown key"),
    (MINIMAL + "colour = 1\n", "<profile>: edge.colour: unknown key"),
    (MINIMAL + "https_port = \"https\"\n", "<profile>: edge.https_port: Input should be a valid integer"),
    (MINIMAL + "https_port = 70000\n", "<profile>: edge.https_port: Input should be less than or equal to 65535"),
    (MINIMAL + '[database]\ndsn = "host=db user=a password=hunter2"\n',
     "<profile>: database.dsn: Value error, the DSN must not hold a password"),
    (MINIMAL + '[database]\ndsn = "postgresql://a:hunter2@db/x"\n',
     "<profile>: database.dsn: Value error, the DSN must not hold a password"),
    (MINIMAL + '[hsm]\nmodule = "/m.so"\ntoken_label = "t"\npin = {}\n',
     "<profile>: hsm.pin: Value error, give exactly one of 'file' or 'prompt = true'"),
    ('name = "x"\n[edge\n', "<profile>: not valid TOML"),
    (MINIMAL + '[mailbox]\nhost = "imap.example"\nuser = "a"\naddress = "a+x@example.org"\n'
     'password = { file = "p" }\n', "<profile>: mailbox.address: Value error, give the mailbox's own "
     "address, LOCAL@DOMAIN, without '+' or spaces"),
    (MINIMAL + '[mailbox]\nhost = "imap.example"\nuser = "a"\naddress = "a@b@example.org"\n'
     'password = { file = "p" }\n', "<profile>: mailbox.address: Value error"),
    (MINIMAL + '[mailbox]\nhost = "imap.example"\nuser = "a"\naddress = "a@example.org"\n',
     "<profile>: mailbox.password: Field required"),
])
def test_bad_profiles_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_profile(text)
    assert message in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_a_profile_says_the_edge_serves_no_plain_http_with_none() -> None:
    # TOML has no null: "none" is the one spelling, read as no plaintext port in the profile
    assert parse_profile(MINIMAL + 'http_port = "none"\n').edge.http_port is None
    assert parse_profile(MINIMAL + "http_port = 8080\n").edge.http_port == 8080


@pytest.mark.parametrize("value", ['"off"', '"None"', '""', "false", "true", '"closed"'])
def test_any_other_word_for_the_plaintext_port_is_one_line(value: str) -> None:
    # A boolean would otherwise be read as port 0 or 1, and a word as nothing the user meant
    with pytest.raises(ProfileError) as exc:
        parse_profile(MINIMAL + f"http_port = {value}\n")
    assert str(exc.value) == ('<profile>: edge.http_port: Value error, give a port number (1-65535), or "none" '
                              "when the edge serves no plain HTTP")


def test_a_bad_plaintext_port_stops_the_run_with_exit_3(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import EXIT_USAGE, main

    target = tmp_path / "target.toml"
    target.write_text(MINIMAL + "http_port = false\n")
    code = main(["run", "--target", str(target), "--report-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE == 3 and err.count("\n") == 1 and "Traceback" not in err
    assert f'{target}: edge.http_port: Value error, give a port number (1-65535), or "none"' in err
    assert not (tmp_path / "r" / "results.json").exists()


def test_a_mailbox_gives_each_canary_a_plus_address_of_its_own() -> None:
    profile = parse_profile(MINIMAL + '[mailbox]\nhost = "127.0.0.1"\nserver_name = "imap.example"\n'
                                      'user = "audit"\naddress = "Audit@Mail.Example"\n'
                                      'password = { file = "/run/secrets/imap" }\n')
    box = profile.mailbox
    assert box is not None and (box.port, box.folder, box.trust_anchor) == (993, "INBOX", None)
    # The address is kept lower case, and each run's canary gets its own tag
    assert box.plus_address("canary-AB12") == "audit+canary-ab12@mail.example"


def test_relative_paths_are_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    path = tmp_path / "p" / "target.toml"
    path.write_text(MINIMAL + 'trust_anchor = "ca.pem"\n')
    assert load_profile(path).edge.trust_anchor == tmp_path / "p" / "ca.pem"


def test_missing_profile_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"cannot read the profile: No such file or directory"):
        load_profile(tmp_path / "absent.toml")


def test_secret_source_reads_a_file_and_names_an_unreadable_one(tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("123456\n")
    pin.chmod(0o600)
    assert SecretSource(file=pin).read("HSM PIN") == "123456"
    with pytest.raises(ProfileError, match=r"HSM PIN: cannot read .*absent: No such file"):
        SecretSource(file=tmp_path / "absent").read("HSM PIN")


def test_a_secret_file_gives_its_first_line_only(tmp_path: Path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("  123456 \nsecond line that is not the PIN\n")
    pin.chmod(0o400)
    assert SecretSource(file=pin).read("HSM PIN") == "123456"


@pytest.mark.parametrize(("mode", "shown"), [(0o644, "0644"), (0o640, "0640"), (0o604, "0604")])
def test_a_secret_file_others_may_read_is_refused(tmp_path: Path, mode: int, shown: str) -> None:
    pin = tmp_path / "pin"
    pin.write_text("123456\n")
    pin.chmod(mode)
    with pytest.raises(ProfileError) as exc:
        SecretSource(file=pin).read("HSM PIN")
    assert f"its mode is {shown}: group or others may read it (chmod 600 {pin})" in str(exc.value)
    assert "123456" not in str(exc.value)


def test_a_symlinked_secret_file_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real-pin"
    real.write_text("123456\n")
    real.chmod(0o600)
    (tmp_path / "pin").symlink_to(real)
    with pytest.raises(ProfileError, match=r"is a symbolic link; a secret file is read only where it is"):
        SecretSource(file=tmp_path / "pin").read("HSM PIN")


@pytest.mark.parametrize("content", ["", "\n", "   \nsecond\n"])
def test_a_secret_file_with_a_blank_first_line_is_refused(tmp_path: Path, content: str) -> None:
    pin = tmp_path / "pin"
    pin.write_text(content)
    pin.chmod(0o600)
    with pytest.raises(ProfileError, match=r"its first line is empty"):
        SecretSource(file=pin).read("HSM PIN")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_the_loader_raises_only_its_own_error(text: str) -> None:
    with contextlib.suppress(ProfileError):
        parse_profile(text)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["host", "address", "https_port", "http_port", "trust_anchor", "x"]),
                       st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none()), max_size=5))
def test_edge_tables_of_any_shape_raise_only_profile_errors(edge: dict) -> None:
    import tomli_w

    text = tomli_w.dumps({"name": "n", "edge": {k: v for k, v in edge.items() if v is not None}})
    with contextlib.suppress(ProfileError):
        parse_profile(text)


def test_the_documented_example_profile_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "fixtures" / "profiles" / "example.toml"
    profile = load_profile(example)
    assert profile.backend == "remote" and profile.hsm is not None and profile.hsm.pin.prompt
    assert profile.database is not None and profile.database.password is not None
    assert profile.database.password.file == example.parent / "secrets" / "auditor-password"
