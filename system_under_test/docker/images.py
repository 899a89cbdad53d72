"""The reference service's images, built without a registry, in parallel, from one shared base.

Images and their parents (each ``images/NAME/Dockerfile`` starts ``FROM ${BASE}``)::

    base (mmdebstrap | docker import: Debian + ca-certificates + apt)
    ├── edge, hsm, db, redis
    └── python (python3, the service's wheels in /opt/votriz)
        └── api, fakes

Machines of this project reach no registry, so the root is made with
``mmdebstrap`` from the Debian mirror named in
``/etc/apt/sources.list.d/debian.sources``. What an image adds to its parent is
downloaded on the host (:class:`~system_under_test.docker.debian_packages.PackageDownloader`)
and Python packages as wheels (``pip download``); both go into the build
context, so ``docker build`` never touches the network. The Dockerfiles stay
standard: given ``BASE=debian:bookworm-slim`` and no .debs,
``install-packages.sh`` installs the same packages with apt from the network.

Every image whose parent exists is built at once, so after the base the
four leaves and ``python`` build side by side. Tags carry a hash of every
input (the parent's tag, the image's directory, the source tree for api and
fakes): ``REPOSITORY/NAME:HASH``. ``REPOSITORY`` is ``votriz-audit`` unless
``VOTRIZ_IMAGE_REPOSITORY`` names another (a build measured from nothing
beside the images others use).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from system_under_test.docker.build_progress import BuildProgress, progress_for
from system_under_test.docker.debian_packages import (
    CUSTOMIZE_HOOK,
    SUITE,
    ImageError,
    PackageDownloader,
    build_root,
    mirror_uris,
    run_tool,
)

__all__ = ["PARTS", "REPOSITORY", "ImageError", "ensure_images", "mirror_uris"]

IMAGES_DIR = Path(__file__).resolve().parent / "images"
SOURCE_PACKAGE = Path(__file__).resolve().parents[1]  # system_under_test/
_REPOSITORY_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")


def _repository() -> str:
    name = os.environ.get("VOTRIZ_IMAGE_REPOSITORY", "votriz-audit")
    if not _REPOSITORY_NAME.fullmatch(name):
        raise SystemExit(f"VOTRIZ_IMAGE_REPOSITORY={name!r} is not a Docker repository name")
    return name


REPOSITORY = _repository()
#: The services' images (what the stack runs).
PARTS: tuple[str, ...] = ("edge", "api", "hsm", "db", "redis", "fakes")
#: Each image's parent; ``base`` is the imported root.
PARENTS: Mapping[str, str] = {"python": "base", "edge": "base", "hsm": "base", "db": "base",
                              "redis": "base", "api": "python", "fakes": "python"}
# Images holding the reference service's source (the last layer, so a source edit rebuilds little).
SOURCE_PARTS = frozenset({"api", "fakes"})
# The image holding the wheels (requirements.txt) that api and fakes share.
PYTHON_IMAGE = "python"
# Debian 12's Python (3.11.2). pip download evaluates patch-level markers
# against the host's interpreter, so such dependencies are listed explicitly
# in requirements.txt (redis needs async-timeout below 3.11.3).
IMAGE_PYTHON_VERSION = "3.11"
PIP_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 900
#: At most this many ``docker build`` at once (the rest wait for a slot).
BUILD_SLOTS = 4


@dataclass(frozen=True)
class ImageSpec:
    """One image's build inputs.

    Attributes:
        part: the image's name (``base``, ``python`` or a part).
        directory: ``images/NAME`` (Dockerfile, packages.txt, maybe requirements.txt).
        packages: Debian packages the image needs (installed unless its parent has them).
        requirements: pinned Python requirements, empty but for ``python``.
    """

    part: str
    directory: Path
    packages: tuple[str, ...]
    requirements: tuple[str, ...]

    @property
    def dockerfile(self) -> Path:
        """The image's Dockerfile."""
        return self.directory / "Dockerfile"


@dataclass(frozen=True)
class BuiltImage:
    """One image, built now or found in the engine's cache.

    Attributes:
        part: the image's name.
        tag: ``REPOSITORY/NAME:HASH``.
        base_tag: its parent's tag (the root's own tag for ``base``).
        size_bytes: the image's size as the engine reports it.
        built: False when it was already there.
        seconds: time spent building it (0 when cached).
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


# What of system_under_test/ the api and fakes images hold: the service, not its
# backends (so that editing a backend does not rebuild the images).
IMAGE_SOURCES: tuple[str, ...] = ("__init__.py", "faults.py", "faults.toml", "api", "ops", "fakes",
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
    """Hash of what the root depends on: suite, mirrors, packages, hook."""
    return _digest([SUITE.encode(), *(m.encode() for m in mirrors), *(p.encode() for p in spec.packages),
                    CUSTOMIZE_HOOK.encode()])


def image_hash(spec: ImageSpec, base: str) -> str:
    """Hash of the image's inputs: its parent's tag, every file of ``images/NAME``, the source tree."""
    chunks = [base.encode(), (IMAGES_DIR / "install-packages.sh").read_bytes()]
    for path in sorted(spec.directory.rglob("*")):
        if path.is_file():
            chunks += [str(path.relative_to(spec.directory)).encode(), path.read_bytes()]
    if spec.part in SOURCE_PARTS:
        for path in _source_files():
            chunks += [str(path.relative_to(SOURCE_PACKAGE.parent)).encode(), path.read_bytes()]
    return _digest(chunks)


def planned_tags(names: Iterable[str], mirrors: tuple[str, ...]) -> dict[str, str]:
    """Each named image's tag and its ancestors', from their inputs alone (nothing is built)."""
    tags: dict[str, str] = {}

    def tag_of(name: str) -> str:
        if name not in tags:
            spec = load_spec(name)
            if name == "base":
                tags[name] = f"{REPOSITORY}/base:{base_hash(spec, mirrors)}"
            else:
                tags[name] = f"{REPOSITORY}/{name}:{image_hash(spec, tag_of(PARENTS[name]))}"
        return tags[name]

    for name in names:
        tag_of(name)
    return tags


def cache_dir() -> Path:
    """Where wheels, .debs and build contexts are kept (``VOTRIZ_DOCKER_CACHE`` or ~/.cache)."""
    root = os.environ.get("VOTRIZ_DOCKER_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "votriz-audit" / "docker"


def _image_exists(client: Any, tag: str) -> Any | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag)
    except ImageNotFound:
        return None


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
    run_tool(argv, "pip download", PIP_TIMEOUT_S)
    (directory / ".complete").write_text("", encoding="ascii")
    return directory


def dpkg_status(client: Any, tag: str) -> bytes:
    """The image's ``/var/lib/dpkg/status`` (which Debian packages it holds)."""
    container = client.containers.create(tag, ["true"], network_disabled=True)
    try:
        chunks, _ = container.get_archive("/var/lib/dpkg/status")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            member = archive.extractfile("status")
            if member is None:
                raise ImageError(f"{tag} has no /var/lib/dpkg/status")
            return member.read()
    finally:
        container.remove(force=True)


class _Builder:
    """One ensure_images call: the images it builds, each once, children after their parent."""

    def __init__(self, client: Any, mirrors: tuple[str, ...], tags: Mapping[str, str],
                 progress: BuildProgress) -> None:
        self.client = client
        self.mirrors = mirrors
        self.tags = tags
        self.progress = progress
        self.packages = PackageDownloader(cache_dir() / "apt", mirrors)
        self.slots = threading.Semaphore(BUILD_SLOTS)
        self._fetches = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wheels")
        self._wheels: Future[Path] | None = None
        self._wheels_lock = threading.Lock()

    def wheels(self, requirements: tuple[str, ...]) -> Future[Path]:
        """The wheels' download, started once (the first caller starts it, early if it can)."""
        with self._wheels_lock:
            if self._wheels is None:
                self._wheels = self._fetches.submit(download_wheels, requirements)
            return self._wheels

    def close(self) -> None:
        """Wait for a download still running (its result is cached for the next build)."""
        self._fetches.shutdown(wait=True)

    def base(self) -> None:
        """mmdebstrap the root and import it (the package lists are fetched meanwhile)."""
        spec = load_spec("base")
        lists = threading.Thread(target=self._update_quietly, daemon=True)
        lists.start()
        with tempfile.TemporaryDirectory(prefix="votriz-base-", dir=cache_dir()) as tmp:
            tarball = Path(tmp) / "rootfs.tar"
            self.progress.step("base", f"mmdebstrap ({len(spec.packages)} packages and apt)")
            build_root(spec.packages, self.mirrors, tarball)
            self.progress.step("base", "docker import")
            repository, version = self.tags["base"].split(":")
            self.client.api.import_image_from_file(str(tarball), repository=repository, tag=version)
        lists.join()

    def _update_quietly(self) -> None:
        # A failure is raised again, with its message, by the first download.
        with contextlib.suppress(ImageError):
            self.packages.update()

    def image(self, name: str) -> None:
        """Build one image on its (existing) parent."""
        from docker.errors import APIError

        spec = load_spec(name)
        parent = self.tags[PARENTS[name]]
        with tempfile.TemporaryDirectory(prefix=f"votriz-ctx-{name}-", dir=cache_dir()) as tmp:
            context = Path(tmp) / "context"
            shutil.copytree(spec.directory, context)
            shutil.copy2(IMAGES_DIR / "install-packages.sh", context / "install-packages.sh")
            self.progress.step(name, "resolving Debian packages")
            debs = self.packages.download(dpkg_status(self.client, parent), spec.packages,
                                          context / "debs") if spec.packages else []
            (context / "debs").mkdir(exist_ok=True)
            if spec.requirements:
                self.progress.step(name, f"downloading {len(spec.requirements)} Python requirements")
                shutil.copytree(self.wheels(spec.requirements).result(), context / "wheels",
                                ignore=shutil.ignore_patterns(".complete"))
            if name in SOURCE_PARTS:
                for path in _source_files():
                    target = context / "src" / path.relative_to(SOURCE_PACKAGE.parent)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
            self.progress.step(name, f"waiting for a build slot ({len(debs)} .debs)")
            with self.slots:
                self.progress.step(name, f"docker build ({len(debs)} .debs)")
                try:
                    self._docker_build(name, context, parent)
                except APIError as exc:
                    raise ImageError(f"docker build of {name} failed: {exc.explanation or exc}") from None

    def _docker_build(self, name: str, context: Path, parent: str) -> None:
        # No network during the build: everything comes from the parent and the context.
        log: list[str] = []
        for chunk in self.client.api.build(path=str(context), tag=self.tags[name], buildargs={"BASE": parent},
                                           pull=False, rm=True, forcerm=True, network_mode="none",
                                           timeout=BUILD_TIMEOUT_S, decode=True,
                                           labels={"votriz.image": name}):
            if "error" in chunk:
                tail = " | ".join(line for line in log[-5:] if line)
                raise ImageError(f"docker build of {name} failed: {str(chunk['error']).strip()[:300]}; "
                                 f"{tail[:400]}")
            line = str(chunk.get("stream", "")).strip()
            if line:
                log.append(line)
                if line.startswith("Step "):
                    self.progress.step(name, f"docker build, {line.split(' :', 1)[0].lower()}")


def _with_ancestors(parts: Iterable[str]) -> list[str]:
    names: list[str] = []
    for part in parts:
        chain = [part]
        while chain[-1] in PARENTS:
            chain.append(PARENTS[chain[-1]])
        names += [name for name in reversed(chain) if name not in names]
    return names


def ensure_images(client: Any, parts: Iterable[str] = PARTS, *,
                  progress: BuildProgress | None = None) -> Mapping[str, BuiltImage]:
    """Every part's image, building what is missing (and its parents); part → BuiltImage.

    Each image starts as soon as its parent exists. Progress goes to
    ``progress``, by default to stderr (live rows on a terminal, plain lines
    otherwise); nothing is shown when every image exists. The images of the
    parts' older inputs are removed afterwards.
    """
    mirrors = mirror_uris()
    wanted = list(parts)
    names = _with_ancestors(wanted)
    tags = planned_tags(names, mirrors)
    missing = [name for name in names if _image_exists(client, tags[name]) is None]
    seconds: dict[str, float] = {}
    if missing:
        cache_dir().mkdir(parents=True, exist_ok=True)
        shown = progress or progress_for(sys.stderr)
        try:
            _build(client, mirrors, tags, missing, shown, seconds)
        finally:
            if progress is None:
                shown.close()
    results = {}
    for part in wanted:
        image = _image_exists(client, tags[part])
        if image is None:
            raise ImageError(f"{tags[part]} is missing after its build")
        results[part] = BuiltImage(part=part, tag=tags[part], base_tag=tags[PARENTS[part]],
                                   size_bytes=int(image.attrs.get("Size", 0)), built=part in missing,
                                   seconds=seconds.get(part, 0.0))
    prune_stale_images(client, tags.values(), names)
    return results


def _build(client: Any, mirrors: tuple[str, ...], tags: Mapping[str, str], missing: list[str],
           progress: BuildProgress, seconds: dict[str, float]) -> None:
    builder = _Builder(client, mirrors, tags, progress)
    if PYTHON_IMAGE in missing:
        # The wheels come from PyPI while the base is made from the Debian mirror.
        builder.wheels(load_spec(PYTHON_IMAGE).requirements)
    futures: dict[str, Future[None]] = {}

    def one(name: str) -> None:
        parent = futures.get(PARENTS.get(name, ""))
        if parent is not None:
            progress.step(name, f"waiting for {PARENTS[name]}")
            try:
                parent.result()
            except BaseException:
                progress.finished(name, f"not built ({PARENTS[name]} failed)")
                raise
        started = time.monotonic()
        try:
            builder.base() if name == "base" else builder.image(name)
        except BaseException as exc:
            progress.finished(name, f"failed: {str(exc)[:200]}")
            raise
        seconds[name] = round(time.monotonic() - started, 1)
        progress.finished(name, f"built in {seconds[name]:.1f} s")

    # One thread per image: most of them wait for a parent or on the mirror and the engine.
    try:
        with ThreadPoolExecutor(max_workers=len(missing), thread_name_prefix="image") as pool:
            for name in missing:  # parents come first in `missing`
                futures[name] = pool.submit(one, name)
            for name in missing:
                futures[name].result()
    finally:
        builder.close()


def prune_stale_images(client: Any, keep: Iterable[str], names: Iterable[str] = ()) -> list[str]:
    """Remove this repository's tags of ``names`` (default: every image) other than ``keep``.

    Every change to the reference service's source makes new api and fakes
    images; without this, each would stay on disk forever. The per-part
    bases of before the shared base (``base-PART``) go too. An image that a
    container still uses (a running stack of an older checkout) is kept: the
    engine refuses, and that refusal is not an error. Returns the tags removed.
    """
    from docker.errors import APIError, NotFound

    wanted = set(keep)
    ours = set(names) or {"base", *PARENTS}
    ours |= {f"base-{part}" for part in PARTS if part in ours}
    removed = []
    for image in client.images.list(name=f"{REPOSITORY}/*"):
        for tag in image.tags:
            repository, _, _ = tag.rpartition(":")
            name = repository.removeprefix(f"{REPOSITORY}/")
            # Only the images' own tags: images that faults build per stack go with their stack.
            if tag in wanted or name not in ours:
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
    built = ensure_images(client)
    for result in built.values():
        how = f"built in {result.seconds:.1f} s" if result.built else "cached"
        print(f"{result.part:6} {result.tag} {result.size_bytes / 2**20:.0f} MiB ({how})")
    print(f"total {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
