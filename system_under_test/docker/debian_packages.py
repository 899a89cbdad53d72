"""Debian packages for the images without a registry: the shared root file system and the .debs.

Machines of this project reach the Debian mirror but no container registry.
The images' common root is made with ``mmdebstrap`` (piped into ``docker
import`` by :mod:`system_under_test.docker.images`); what each image adds to
its parent is downloaded here, on the host, by apt with a private state
directory: apt is told which packages the parent image already holds (its
``/var/lib/dpkg/status``) and fetches exactly the missing ones, signatures
and hashes checked as apt always does. The .debs go into the build context,
so ``docker build`` installs them with no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")
SUITE = "bookworm"
# The root holds no package list and no key that a package generated at install time.
CUSTOMIZE_HOOK = ('rm -f "$1/etc/ssl/private/ssl-cert-snakeoil.key" '
                  '"$1/etc/ssl/certs/ssl-cert-snakeoil.pem" && rm -rf "$1/var/lib/apt/lists/"*')
MMDEBSTRAP_TIMEOUT_S = 900.0
APT_TIMEOUT_S = 600.0


class ImageError(RuntimeError):
    """An image could not be built (the message names the step and the cause)."""


def mirror_uris(sources_file: Path = SOURCES_FILE) -> tuple[str, ...]:
    """The mirror lines for mmdebstrap and apt, one per deb822 stanza of ``sources_file``.

    Each stanza becomes one ``deb URI SUITE COMPONENT...`` line per URI and suite (the
    one-line format has one suite a line: a second word there would be read as a
    component); mmdebstrap accepts such lines as mirrors, and they are a valid
    ``sources.list`` for apt.
    """
    try:
        text = sources_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImageError(f"cannot read {sources_file}: {exc.strerror}") from None
    lines: list[str] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for raw in stanza.splitlines():
            if raw.startswith("#") or ":" not in raw:
                continue
            key, value = raw.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or "uris" not in fields:
            continue
        lines += [f"deb {uri} {suite} {fields.get('components', 'main')}"
                  for uri in fields["uris"].split() for suite in fields.get("suites", SUITE).split()]
    if not lines:
        raise ImageError(f"{sources_file} names no deb mirror")
    return tuple(lines)


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1][:300]


def run_tool(argv: Sequence[str], what: str, timeout_s: float,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one build tool; a tool that fails or hangs is one ImageError naming ``what``."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False,
                                env=env)
    except subprocess.TimeoutExpired:
        raise ImageError(f"{what}: no result after {timeout_s:.0f} s") from None
    if result.returncode != 0:
        raise ImageError(f"{what} failed: {_last_line(result.stderr)}")
    return result


def build_root(packages: Sequence[str], mirrors: Sequence[str], tarball: Path) -> None:
    """Write a Debian root file system holding ``packages`` (and apt) to ``tarball``."""
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap not found: apt-get install mmdebstrap")
    argv = ["mmdebstrap", "--mode=root", "--variant=apt", "--quiet",
            f"--include={','.join(packages)}", f"--customize-hook={CUSTOMIZE_HOOK}",
            SUITE, str(tarball), *mirrors]
    run_tool(argv, "mmdebstrap", MMDEBSTRAP_TIMEOUT_S)


class PackageDownloader:
    """apt on the host with a private state: package lists once, then each image's missing .debs.

    Downloads share one archive directory (a .deb two images need is fetched
    once); apt locks it, so downloads run one at a time, while resolving
    (which packages a parent lacks) runs in parallel.

    Attributes:
        root: the private state (``sources.list``, lists, archives).
        mirrors: the ``deb URI SUITE COMPONENT`` lines.
    """

    def __init__(self, root: Path, mirrors: Sequence[str]) -> None:
        self.root = root
        self.mirrors = tuple(mirrors)
        self._updated = False
        self._update_lock = threading.Lock()
        self._download_lock = threading.Lock()
        for sub in ("lists/partial", "archives/partial", "parts", "state"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "sources.list").write_text("".join(f"{m}\n" for m in self.mirrors), encoding="utf-8")

    def _apt(self, args: Sequence[str], what: str, status: Path,
             archives: Path | None = None) -> subprocess.CompletedProcess[str]:
        options = {
            "Dir::Etc::SourceList": self.root / "sources.list",
            "Dir::Etc::SourceParts": self.root / "parts",
            "Dir::State": self.root / "state",
            "Dir::State::Lists": self.root / "lists",
            "Dir::State::status": status,
            "Dir::Cache::archives": archives or self.root / "archives",
            # No binary caches: they depend on the status file, and calls run in parallel.
            "Dir::Cache::pkgcache": "", "Dir::Cache::srcpkgcache": "",
            # The private directories belong to the caller, not to apt's sandbox user.
            "APT::Sandbox::User": "root",
            "APT::Install-Recommends": "false",
        }
        argv = ["apt-get", "-q", *(f"-o{key}={value}" for key, value in options.items()), *args]
        return run_tool(argv, what, APT_TIMEOUT_S,
                        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})

    def update(self) -> None:
        """Fetch the package lists (once per downloader)."""
        with self._update_lock:
            if self._updated:
                return
            empty = self.root / "state" / "empty-status"
            empty.write_text("", encoding="utf-8")
            self._apt(["update"], "apt-get update", empty)
            self._updated = True

    def download(self, parent_status: bytes, packages: Sequence[str], into: Path) -> list[Path]:
        """Put into ``into`` the .debs that ``packages`` need beyond what the parent holds.

        Returns the files (none when the parent has everything).
        """
        self.update()
        into.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix="status-", dir=self.root / "state") as status_file:
            status_file.write(parent_status)
            status_file.flush()
            status = Path(status_file.name)
            # apt leaves out of --print-uris what its archive holds already: list against an empty one.
            with tempfile.TemporaryDirectory(dir=self.root / "state") as nothing:
                (Path(nothing) / "partial").mkdir()
                listed = self._apt(["install", "--print-uris", "-qq", *packages],
                                   f"apt resolving {' '.join(packages)}", status, Path(nothing))
            names = [line.split()[1] for line in listed.stdout.splitlines() if line.startswith("'")]
            if not names:
                return []
            with self._download_lock:
                self._apt(["install", "--download-only", "-y", *packages],
                          f"apt download of {' '.join(packages)}", status)
        files = []
        for name in names:
            source = self.root / "archives" / name
            if not source.is_file():
                raise ImageError(f"apt did not download {name}")
            target = into / name
            shutil.copyfile(source, target)
            files.append(target)
        return files
