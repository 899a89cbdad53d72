"""Write the secret files a target profile names, mode 0600, from the job's environment.

A release gate runs without a terminal, so every secret of the profile must be a file
(``prompt = true`` cannot be answered there). The workflow hands each repository secret
to this step as an environment variable named after the profile key it fills:
``database.password`` -> ``VOTRIZ_DATABASE_PASSWORD``, ``hsm.pin`` -> ``VOTRIZ_HSM_PIN``,
``redis.password`` -> ``VOTRIZ_REDIS_PASSWORD``, ``mailbox.password`` ->
``VOTRIZ_MAILBOX_PASSWORD`` (any other secret the profile model gains, likewise). Each
file is created new (never through a symbolic link), readable by its owner only, at the
path the profile names (relative paths are relative to the profile, as the harness reads
them); the paths written are appended to ``--record``, which ``--remove``
reads to delete them when the job ends, whatever happened.

    python write_secret_files.py PROFILE --record LIST [--signing-key FILE]
    python write_secret_files.py --remove LIST

Exit 0 when written (or removed), 3 with one line naming the key and the variable when a
secret is missing or cannot be written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel

from harness.profile import ProfileError, SecretSource, load_profile

EXIT_USAGE = 3
SIGNING_KEY_VARIABLE = "VOTRIZ_AUDIT_SIGNING_KEY"


class SecretFileError(Exception):
    """A secret is missing or its file cannot be written (one line, no secret in it)."""


def secret_sources(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, SecretSource]]:
    """Every secret source of the profile, with its key path (``hsm.pin``), in the model's order."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, SecretSource):
            yield key, value
        elif isinstance(value, BaseModel):
            yield from secret_sources(value, f"{key}.")


def variable_of(key: str) -> str:
    """The environment variable (and repository secret) that fills profile key ``key``."""
    return "VOTRIZ_" + key.upper().replace(".", "_")


def write_private(path: Path, text: str) -> None:
    """Create ``path`` anew, mode 0600, holding ``text``; refuse a symbolic link at the path."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_symlink():
        raise SecretFileError(f"{path}: is a symbolic link; not writing a secret through it")
    if path.exists():
        if not path.is_file():
            raise SecretFileError(f"{path}: exists and is not a regular file")
        path.unlink()  # a file an earlier job left: replaced, never written through
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text if text.endswith("\n") else text + "\n")


def write_profile_secrets(profile_path: Path, environ: Mapping[str, str], record: Path,
                          signing_key: Path | None = None) -> list[Path]:
    """Write every secret file of the profile (and the signing key) from ``environ``, each path
    appended to ``record`` as soon as it is written; return the paths written. Nothing is written
    unless every secret is there.

    Raises:
        SecretFileError: the profile does not load, a secret is prompted, or its variable is
            empty; or a file cannot be written.
    """
    try:
        profile = load_profile(profile_path)
    except ProfileError as exc:
        raise SecretFileError(str(exc)) from None
    wanted: list[tuple[Path, str, str]] = []
    for key, source in secret_sources(profile):
        variable = variable_of(key)
        if source.file is None:
            raise SecretFileError(f"{profile_path}: {key}: prompt = true cannot be answered without a "
                                  f"terminal; name a file ({key} = {{ file = \"...\" }}) and set the "
                                  f"repository secret {variable}")
        if not environ.get(variable, "").strip():
            raise SecretFileError(f"{profile_path}: {key}.file is {source.file}, but the repository "
                                  f"secret {variable} is empty or not set")
        wanted.append((source.file, environ[variable].strip(), variable))
    if signing_key is not None:
        if not environ.get(SIGNING_KEY_VARIABLE, "").strip():
            raise SecretFileError(f"the repository secret {SIGNING_KEY_VARIABLE} (Ed25519 private key, "
                                  f"PEM) is empty or not set: a release gate's bundle must be sealed "
                                  f"by a key its reviewers trust")
        wanted.append((signing_key, environ[SIGNING_KEY_VARIABLE].strip(), SIGNING_KEY_VARIABLE))
    written = []
    for path, text, variable in wanted:
        try:
            write_private(path, text)
        except OSError as exc:
            raise SecretFileError(f"{path}: cannot write {variable} there: {exc.strerror}") from None
        with record.open("a", encoding="utf-8") as listing:
            listing.write(f"{path}\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Write (or, with ``--remove``, delete) the secret files; the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("profile", type=Path, nargs="?", help="the target profile (TOML)")
    parser.add_argument("--record", type=Path, help="append the paths written to this file")
    parser.add_argument("--signing-key", type=Path, help=f"also write ${SIGNING_KEY_VARIABLE} here")
    parser.add_argument("--remove", type=Path, metavar="LIST", help="delete the files LIST names")
    args = parser.parse_args(argv)
    if args.remove is not None:
        if args.remove.is_file():
            for line in args.remove.read_text(encoding="utf-8").splitlines():
                Path(line).unlink(missing_ok=True)
            args.remove.unlink()
        return 0
    if args.profile is None or args.record is None:
        parser.error("PROFILE and --record are required (or --remove LIST)")
    try:
        written = write_profile_secrets(args.profile, os.environ, args.record, args.signing_key)
    except SecretFileError as exc:
        print(f"write_secret_files: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"write_secret_files: {len(written)} secret file(s) written, mode 0600")
    return 0


if __name__ == "__main__":
    sys.exit(main())
