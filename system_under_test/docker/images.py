"""The reference service's images, built without a registry and cached by the hash of their inputs.

Each part (``edge``, ``api``, ``hsm``, ``db``, ``redis``, ``fakes``) has a
standard Dockerfile under ``images/PART/`` that starts ``FROM ${BASE}``
(``debian:bookworm-slim`` by default, for anyone who can pull). Machines of
this project reach no registry, so ``ensure_images`` first builds the base
itself: ``mmdebstrap`` with the part's ``packages.txt`` from the Debian
mirror named in ``/etc/apt/sources.list.d/debian.sources``, piped into
``docker import``. Python packages come from wheels downloaded on the host
(``pip download``); ``docker build`` itself never touches the network.

Tags carry a hash of every input (Dockerfile, package list, requirements,
mirror, source tree), so an image is rebuilt only when one of them changed:
``votriz-audit/base-PART:HASH`` and ``votriz-audit/PART:HASH``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGES_DIR = Path(__file__).resolve().parent / "images"
SOURCE_PACKAGE = Path(__file__).resolve().parents[1]  # system_under_test/
SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")
SUITE = "bookworm"
REPOSITORY = "votriz-audit"
# Parts whose image holds the reference service's Python source and wheels.
PYTHON_PARTS = frozenset({"api", "fakes"})
PARTS: tuple[str, ...] = ("edge", "api", "hsm", "db", "redis", "fakes")
# Debian 12's Python (3.11.2). pip download evaluates patch-level markers
# against the host's interpreter, so such dependencies are listed explicitly
# in requirements.txt (redis needs async-timeout below 3.11.3).
IMAGE_PYTHON_VERSION = "3.11"
# Debian's postgresql-common creates a cluster and a snakeoil key at install
# time unless told otherwise before the package is unpacked.
_ESSENTIAL_HOOK = ('mkdir -p "$1/etc/postgresql-common/createcluster.d" && '
                   'echo "create_main_cluster = false" > '
                   '"$1/etc/postgresql-common/createcluster.d/votriz.conf"')
_CUSTOMIZE_HOOK = ('rm -f "$1/etc/ssl/private/ssl-cert-snakeoil.key" '
                   '"$1/etc/ssl/certs/ssl-cert-snakeoil.pem" && rm -rf "$1/var/lib/apt/lists/"*')
MMDEBSTRAP_TIMEOUT_S = 900.0
PIP_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 900


class ImageError(RuntimeError):
    """An image could not be built (the message names the step and the cause)."""


@dataclass(frozen=True)
class ImageSpec:
    """One part's build inputs.

    Attributes:
        part: ``edge``, ``api``, ``hsm``, ``db``, ``redis`` or ``fakes``.
        directory: ``images/PART`` (Dockerfile, packages.txt, maybe requirements.txt).
        packages: Debian packages the image needs (the base's ``--include``).
        requirements: pinned Python requirements, empty for non-Python parts.
    """

    part: str
    directory: Path
    packages: tuple[str, ...]
    requirements: tuple[str, ...]

    @property
    def dockerfile(self) -> Path:
        """The part's Dockerfile."""
        return self.directory / "Dockerfile"


@dataclass(frozen=True)
class BuiltImage:
    """One part's image, built now or found in the engine's cache.

    Attributes:
        part: the part.
        tag: ``votriz-audit/PART:HASH``.
        base_tag: ``votriz-audit/base-PART:HASH``.
        size_bytes: the image's size as the engine reports it.
        built: False when both base and image were already there.
        seconds: time spent on this part (0 when cached).
    """

    part: str
    tag: str
    base_tag: str
    size_bytes: int
    built: bool
    seconds: float


def load_spec(part: str) -> ImageSpec:
    """The build inputs of ``part``, read from ``images/PART``."""
    directory = IMAGES_DIR / part

    def lines(name: str) -> tuple[str, ...]:
        path = directory / name
        if not path.exists():
            return ()
        return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                     if line.strip() and not line.lstrip().startswith("#"))

    return ImageSpec(part=part, directory=directory, packages=lines("packages.txt"),
                     requirements=lines("requirements.txt"))


def mirror_uris(sources_file: Path = SOURCES_FILE) -> tuple[str, ...]:
    """The mirror lines for mmdebstrap, one per deb822 stanza of ``sources_file``.

    Each stanza becomes ``deb URI SUITE... COMPONENT...``; mmdebstrap accepts
    such lines as mirrors.
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
        for uri in fields["uris"].split():
            lines.append(f"deb {uri} {fields.get('suites', SUITE)} {fields.get('components', 'main')}")
    if not lines:
        raise ImageError(f"{sources_file} names no deb mirror")
    return tuple(lines)


# What of system_under_test/ the Python images hold: the service, not its
# backends (so that editing a backend does not rebuild the images).
IMAGE_SOURCES: tuple[str, ...] = ("__init__.py", "faults.py", "api", "ops", "fakes",
                                  "docker/__init__.py", "docker/fakes_server.py")


def _source_files() -> list[Path]:
    files = []
    for entry in IMAGE_SOURCES:
        root = SOURCE_PACKAGE / entry
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                files.append(path)
    return files


def _digest(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "big"))
        h.update(chunk)
    return h.hexdigest()[:16]


def base_hash(spec: ImageSpec, mirrors: tuple[str, ...]) -> str:
    """Hash of what the base depends on: suite, mirrors, packages, hooks."""
    return _digest([SUITE.encode(), *(m.encode() for m in mirrors), *(p.encode() for p in spec.packages),
                    _ESSENTIAL_HOOK.encode(), _CUSTOMIZE_HOOK.encode()])


def image_hash(spec: ImageSpec, base: str) -> str:
    """Hash of the image's inputs: its base tag, every file of ``images/PART``, the source tree."""
    chunks = [base.encode(), (IMAGES_DIR / "install-packages.sh").read_bytes()]
    for path in sorted(spec.directory.rglob("*")):
        if path.is_file():
            chunks += [str(path.relative_to(spec.directory)).encode(), path.read_bytes()]
    if spec.part in PYTHON_PARTS:
        for path in _source_files():
            chunks += [str(path.relative_to(SOURCE_PACKAGE.parent)).encode(), path.read_bytes()]
    return _digest(chunks)


def cache_dir() -> Path:
    """Where wheels and build contexts are kept (``VOTRIZ_DOCKER_CACHE`` or ~/.cache)."""
    root = os.environ.get("VOTRIZ_DOCKER_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "votriz-audit" / "docker"


def _image_exists(client: Any, tag: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag)
    except ImageNotFound:
        return None


def build_base(client: Any, spec: ImageSpec, mirrors: tuple[str, ...]) -> str:
    """Build (or find) the part's base image; return its tag."""
    tag = f"{REPOSITORY}/base-{spec.part}:{base_hash(spec, mirrors)}"
    if _image_exists(client, tag) is not None:
        return tag
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap not found: apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory(prefix=f"votriz-base-{spec.part}-", dir=cache_dir()) as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        argv = ["mmdebstrap", "--mode=root", "--variant=apt", "--quiet",
                f"--include={','.join(spec.packages)}",
                f"--essential-hook={_ESSENTIAL_HOOK}", f"--customize-hook={_CUSTOMIZE_HOOK}",
                SUITE, str(tarball), *mirrors]
        try:
            result = subprocess.run(argv, capture_output=True, text=True,
                                    timeout=MMDEBSTRAP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ImageError(f"mmdebstrap for {spec.part}: no result after "
                             f"{MMDEBSTRAP_TIMEOUT_S:.0f} s") from None
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ImageError(f"mmdebstrap for {spec.part} failed: {last[:300]}")
        repository, version = tag.split(":")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
    return tag


def download_wheels(requirements: tuple[str, ...]) -> Path:
    """Download (once) the wheels for ``requirements`` on the host; return their directory."""
    directory = cache_dir() / "wheels" / _digest([IMAGE_PYTHON_VERSION.encode(),
                                                  *(r.encode() for r in requirements)])
    if (directory / ".complete").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    # Only binary wheels for the images' CPython: they have no compiler.
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
            "--python-version", IMAGE_PYTHON_VERSION, "--implementation", "cp",
            "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
            "--platform", "manylinux_2_17_x86_64", "--platform", "linux_x86_64",
            "-d", str(directory), *requirements]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                                check=False)
    except subprocess.TimeoutExpired:
        raise ImageError(f"pip download: no result after {PIP_TIMEOUT_S:.0f} s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ImageError(f"pip download failed: {last[:300]}")
    (directory / ".complete").write_text("", encoding="ascii")
    return directory


def _assemble_context(spec: ImageSpec, context: Path) -> None:
    shutil.copytree(spec.directory, context)
    shutil.copy2(IMAGES_DIR / "install-packages.sh", context / "install-packages.sh")
    if spec.part in PYTHON_PARTS:
        shutil.copytree(download_wheels(spec.requirements), context / "wheels",
                        ignore=shutil.ignore_patterns(".complete"))
        for path in _source_files():
            target = context / "src" / path.relative_to(SOURCE_PACKAGE.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def build_image(client: Any, spec: ImageSpec, mirrors: tuple[str, ...]) -> BuiltImage:
    """Build (or find) the part's base and image."""
    started = time.monotonic()
    base_existed = _image_exists(client, f"{REPOSITORY}/base-{spec.part}:{base_hash(spec, mirrors)}")
    base = build_base(client, spec, mirrors)
    tag = f"{REPOSITORY}/{spec.part}:{image_hash(spec, base)}"
    image = _image_exists(client, tag)
    built = image is None or base_existed is None
    if image is None:
        from docker.errors import BuildError

        cache_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"votriz-ctx-{spec.part}-", dir=cache_dir()) as tmp:
            context = Path(tmp) / "context"
            _assemble_context(spec, context)
            try:
                # No network during the build: everything comes from the base and the context.
                image, _ = client.images.build(path=str(context), tag=tag, buildargs={"BASE": base},
                                               pull=False, rm=True, forcerm=True, network_mode="none",
                                               timeout=BUILD_TIMEOUT_S,
                                               labels={"votriz.image": spec.part})
            except BuildError as exc:
                tail = [str(line.get("stream", "")).strip() for line in exc.build_log][-5:]
                raise ImageError(f"docker build of {spec.part} failed: {exc.msg}; "
                                 f"{' | '.join(t for t in tail if t)[:400]}") from None
    return BuiltImage(part=spec.part, tag=tag, base_tag=base, size_bytes=int(image.attrs.get("Size", 0)),
                      built=built, seconds=round(time.monotonic() - started, 1) if built else 0.0)


def ensure_images(client: Any, parts: Iterable[str] = PARTS, *, parallel: int = 3,
                  progress: Callable[[str], None] | None = None) -> Mapping[str, BuiltImage]:
    """Every part's image, building what is missing; part → BuiltImage.

    Bases are built ``parallel`` at a time: mmdebstrap mostly waits on the mirror.
    """
    mirrors = mirror_uris()
    cache_dir().mkdir(parents=True, exist_ok=True)
    specs = [load_spec(part) for part in parts]
    # Wheels first, once, so parallel builds of api and fakes do not race on the download.
    for spec in specs:
        if spec.requirements:
            download_wheels(spec.requirements)

    def one(spec: ImageSpec) -> BuiltImage:
        result = build_image(client, spec, mirrors)
        if progress:
            how = f"built in {result.seconds:.1f} s" if result.built else "cached"
            progress(f"{spec.part}: {result.tag} ({how})")
        return result

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(pool.map(one, specs))
    prune_stale_images(client, {tag for result in results for tag in (result.tag, result.base_tag)})
    return {result.part: result for result in results}


def prune_stale_images(client: Any, keep: Iterable[str]) -> list[str]:
    """Remove this project's images whose inputs have changed since (other ``votriz-audit/*`` tags).

    Every change to the reference service's source makes new api and fakes
    images; without this, each would stay on disk forever. An image that a
    container still uses (a running stack of an older checkout) is kept:
    the engine refuses, and that refusal is not an error. Returns the tags removed.
    """
    from docker.errors import APIError, NotFound

    wanted = set(keep)
    removed = []
    for image in client.images.list(name=f"{REPOSITORY}/*"):
        for tag in image.tags:
            repository, _, _ = tag.rpartition(":")
            part = repository.removeprefix(f"{REPOSITORY}/").removeprefix("base-")
            # Only the parts' own tags: images that faults build per stack go with their stack.
            if tag in wanted or part not in PARTS:
                continue
            try:
                client.images.remove(tag, noprune=False)
            except (APIError, NotFound):
                continue
            removed.append(tag)
    return removed


def main() -> int:
    """``python -m system_under_test.docker.images``: build every image, print one line per part."""
    import docker

    client = docker.from_env(timeout=BUILD_TIMEOUT_S)
    started = time.monotonic()
    built = ensure_images(client, progress=print)
    for result in built.values():
        print(f"{result.part:6} {result.tag} {result.size_bytes / 2**20:.0f} MiB")
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
