"""The image builder's order, parallelism and progress, without an engine (a fake client).

The real builds are exercised by tests/system_under_test/test_docker_stack.py
(the stack runs the images); the downloader's test asks the real Debian mirror.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from docker.errors import ImageNotFound

from system_under_test.docker import images
from system_under_test.docker.build_progress import PlainProgress
from system_under_test.docker.debian_packages import PackageDownloader

REPO = Path(__file__).resolve().parents[2]


class FakeEngine:
    """images.get/list/remove over a set of tags; a 'build' adds its tag."""

    def __init__(self, tags: set[str] = frozenset()) -> None:
        self.tags = set(tags)
        self.lock = threading.Lock()

    def get(self, tag: str) -> SimpleNamespace:
        with self.lock:
            if tag not in self.tags:
                raise ImageNotFound(tag)
        return SimpleNamespace(attrs={"Size": 1 << 20}, tags=[tag])

    def list(self, name: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(tags=[tag]) for tag in sorted(self.tags)]

    def remove(self, tag: str, noprune: bool) -> None:
        self.tags.discard(tag)


class Recorder:
    """A BuildProgress that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def step(self, name: str, what: str) -> None:
        self.events.append(("step", name, what))

    def finished(self, name: str, how: str) -> None:
        self.events.append(("finished", name, how))

    def close(self) -> None:
        self.events.append(("close", "", ""))


@pytest.fixture
def fake_builds(monkeypatch: pytest.MonkeyPatch):
    """Builds that take 0.3 s each, record when they ran, and fail for names in ``failing``."""
    engine = FakeEngine()
    spans: dict[str, tuple[float, float]] = {}
    failing: set[str] = set()
    monkeypatch.setattr(images, "mirror_uris", lambda: ("deb http://deb.example/debian bookworm main",))
    monkeypatch.setattr(images, "PackageDownloader", lambda root, mirrors: None)

    def wheels(requirements: tuple[str, ...]) -> Path:
        spans["wheels"] = (time.monotonic(), time.monotonic())
        return Path("/nonexistent")

    monkeypatch.setattr(images, "download_wheels", wheels)

    def build(self: images._Builder, name: str = "base") -> None:
        started = time.monotonic()
        time.sleep(0.3)
        if name in failing:
            raise images.ImageError(f"docker build of {name} failed: E: broken package")
        with engine.lock:
            engine.tags.add(self.tags[name])
        spans[name] = (started, time.monotonic())

    monkeypatch.setattr(images._Builder, "base", lambda self: build(self, "base"))
    monkeypatch.setattr(images._Builder, "image", build)
    return SimpleNamespace(client=SimpleNamespace(images=engine), engine=engine, spans=spans,
                           failing=failing)


def test_images_build_after_their_parent_and_side_by_side(fake_builds, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOTRIZ_DOCKER_CACHE", str(tmp_path))
    progress = Recorder()
    # When every image is missing
    built = images.ensure_images(fake_builds.client, progress=progress)
    spans = fake_builds.spans
    # Then each started only after its parent was there
    for name, parent in images.PARENTS.items():
        assert spans[name][0] >= spans[parent][1], name
    # And the wheels were fetched from PyPI while the base was being made
    assert spans["wheels"][0] < spans["base"][1]
    # And the base's children built at the same time (5 x 0.3 s in sequence would be 1.5 s)
    children = [name for name, parent in images.PARENTS.items() if parent == "base"]
    assert max(spans[c][1] for c in children) - min(spans[c][0] for c in children) < 1.0
    # And the parts are reported built, each with its parent's tag, progress ending per image
    assert set(built) == set(images.PARTS) and all(b.built for b in built.values())
    assert built["api"].base_tag.startswith(f"{images.REPOSITORY}/python:")
    assert built["edge"].base_tag.startswith(f"{images.REPOSITORY}/base:")
    finished = {name for kind, name, how in progress.events if kind == "finished" and how.startswith("built")}
    assert finished == {"base", *images.PARENTS}


def test_nothing_to_build_shows_nothing(fake_builds, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOTRIZ_DOCKER_CACHE", str(tmp_path))
    images.ensure_images(fake_builds.client, progress=Recorder())
    fake_builds.spans.clear()
    progress = Recorder()
    built = images.ensure_images(fake_builds.client, progress=progress)
    assert progress.events == [] and fake_builds.spans == {}  # no build, no download
    assert not any(b.built for b in built.values())


def test_a_failed_parent_stops_its_children_and_says_so(fake_builds, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOTRIZ_DOCKER_CACHE", str(tmp_path))
    fake_builds.failing.add("python")
    progress = Recorder()
    with pytest.raises(images.ImageError, match="docker build of python failed: E: broken package"):
        images.ensure_images(fake_builds.client, progress=progress)
    ends = {name: how for kind, name, how in progress.events if kind == "finished"}
    assert ends["python"].startswith("failed: docker build of python failed")
    assert ends["api"] == ends["fakes"] == "not built (python failed)"
    # The siblings that did not depend on it were built
    assert {"edge", "hsm", "db", "redis"} <= set(fake_builds.spans)


def test_a_subset_of_parts_prunes_only_its_own_images(fake_builds, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOTRIZ_DOCKER_CACHE", str(tmp_path))
    old = {f"{images.REPOSITORY}/edge:old", f"{images.REPOSITORY}/fakes:old", f"{images.REPOSITORY}/base-fakes:old"}
    fake_builds.engine.tags |= old
    images.ensure_images(fake_builds.client, ["fakes"], progress=Recorder())
    assert f"{images.REPOSITORY}/edge:old" in fake_builds.engine.tags
    assert not ({f"{images.REPOSITORY}/fakes:old", f"{images.REPOSITORY}/base-fakes:old"}
                & fake_builds.engine.tags)


def test_plain_progress_writes_steps_ends_and_a_heartbeat() -> None:
    lines: list[str] = []
    now = [100.0]
    progress = PlainProgress(lines.append, heartbeat_s=0.05, clock=lambda: now[0])
    try:
        progress.step("db", "docker build (31 .debs)")
        now[0] = 112.4
        deadline = time.monotonic() + 5
        while not any("still working" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.02)
        progress.finished("db", "built in 12.4 s")
    finally:
        progress.close()
    assert lines[0] == "images: db: docker build (31 .debs)"
    assert "images: still working: db (docker build (31 .debs), 12 s)" in lines
    assert lines[-1] == "images: db: built in 12.4 s"
    assert progress.still_running() == ""


_CHILD = """
import sys, time
from system_under_test.docker.build_progress import progress_for
progress = progress_for(sys.stderr)
progress.step("edge", "mmdebstrap (2 packages)")
time.sleep(1.6)
progress.finished("edge", "built in 1.6 s")
progress.close()
"""


def _child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "NO_COLOR", "TERM")}
    return {**env, "TERM": "xterm-256color", "PYTHONPATH": str(REPO), "COLUMNS": "100"}


def test_on_a_terminal_the_rows_are_redrawn_with_the_elapsed_time() -> None:
    # Given the progress on a pseudo-terminal
    main, secondary = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=secondary, stdout=secondary,
                             stderr=secondary, env=_child_env(), cwd=REPO)
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif child.poll() is not None:
            break
    child.wait(timeout=10)
    os.close(main)
    text = output.decode("utf-8", "replace")
    # Then rich redrew the row in place (cursor movements), several times while it waited,
    # and the elapsed time and the end are shown
    assert child.returncode == 0, text[-500:]
    assert "\x1b[" in text
    assert text.count("mmdebstrap (2 packages)") >= 5
    assert "0:00:01" in text and "built in 1.6 s" in text


def test_in_a_log_the_lines_are_plain() -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60,
                          env=_child_env(), cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["images: edge: mmdebstrap (2 packages)", "images: edge: built in 1.6 s"]


@pytest.mark.slow
def test_downloader_fetches_only_what_the_parent_lacks(tmp_path: Path) -> None:
    # Given apt with a private state, and the host's own package database as "the parent"
    host_status = Path("/var/lib/dpkg/status").read_bytes()
    downloader = PackageDownloader(tmp_path / "apt", images.mirror_uris())
    try:
        downloader.update()
    except images.ImageError as exc:
        pytest.skip(f"no Debian mirror reachable: {exc}")
    # Then a package the parent lacks comes alone: its dependency (libc6) the host holds is not fetched
    missing = "hello" if b"Package: hello\n" not in host_status else "cowsay"
    files = downloader.download(host_status, [missing], tmp_path / "debs")
    assert [f.name.split("_")[0] for f in files] == [missing]
    assert files[0].stat().st_size > 10_000
    # And an unknown package is one clear error
    with pytest.raises(images.ImageError, match="apt resolving no-such-package-votriz failed"):
        downloader.download(host_status, ["no-such-package-votriz"], tmp_path / "x")
