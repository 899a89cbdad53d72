"""What the Docker engine holds about a service besides its processes: container logs and image layers.

The harness runs on the Docker host. A container's standard output and
error are read from the engine (``docker logs``); the files of every layer of
every image the service's containers run are read where the storage driver
keeps them on disk (``GraphDriver.Data``: ``UpperDir`` and ``LowerDir`` of
overlay-type drivers), so a key baked into any layer, even one a later layer
deletes, is found by walking those directories like a source tree. An image
whose layers are not on disk in that form is named as not searched, never
silently skipped.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes import containers as containers_probe
from harness.probes.containers import ContainerSelector, selector_of
from harness.sweep import open_regular

PROJECT_LABEL = containers_probe.PROJECT_LABEL


def docker_client(policy: Policy) -> Any:
    """A client of the Docker engine whose every call is bounded by the policy's request timeout.

    Raises:
        ProbeError: the engine cannot be reached or does not answer in time.
    """
    return containers_probe.docker_client(policy.timeouts.request_s)


def project_containers(project: str | ContainerSelector, client: Any) -> list[Any]:
    """The running containers ``project`` selects (a bare name: ``votriz.project=NAME``), by name.

    Raises:
        ProbeError: the engine cannot be asked, runs no such container, or one of them is
            not running (:func:`harness.probes.containers.service_containers`).
    """
    selector = selector_of(project)
    try:
        containers = containers_probe.service_containers(selector, client)
    except ProbeError:
        raise
    except Exception as exc:  # the SDK raises many kinds; all mean "cannot observe"
        raise containers_probe.engine_error(exc, f"listing the containers labelled {selector}",
                                            float(client.api.timeout)) from None
    if not containers:
        raise ProbeError(f"docker: no running container is labelled {selector}")
    return sorted(containers, key=lambda c: str(c.name))


@dataclass(frozen=True)
class ContainerLog:
    """One container's standard output and error as the engine keeps them.

    Attributes:
        container: the container's name.
        data: the log's bytes (at most the limit asked for).
        truncated: whether the log was longer than that.
    """

    container: str
    data: bytes
    truncated: bool = False

    @property
    def where(self) -> str:
        """How evidence names it."""
        return f"docker logs {self.container}"


def container_logs(containers: list[Any], max_bytes: int) -> list[ContainerLog]:
    """The logs of each container, read up to ``max_bytes`` each.

    Raises:
        ProbeError: the engine does not give a log.
    """
    logs = []
    for container in containers:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    break
        except Exception as exc:  # the SDK raises many kinds; all mean "cannot observe"
            raise containers_probe.engine_error(exc, f"reading the log of {container.name}",
                                                float(container.client.api.timeout)) from None
        data = b"".join(chunks)
        logs.append(ContainerLog(str(container.name), data[:max_bytes], size > max_bytes))
    return logs


@dataclass(frozen=True)
class ImageLayers:
    """The on-disk layers of the images a service's containers run.

    Attributes:
        layers: (how evidence names it, directory) per distinct layer, top layer first per image.
        images: the images, by tag (or id).
        unsearchable: images whose layers are not on disk in a form the harness reads, with why.
    """

    layers: tuple[tuple[str, Path], ...]
    images: tuple[str, ...]
    unsearchable: tuple[str, ...] = ()


def image_layers(containers: list[Any], client: Any) -> ImageLayers:
    """Every layer directory of every image the containers run (each layer once).

    Raises:
        ProbeError: the engine cannot describe an image.
    """
    layers: dict[Path, str] = {}
    images: list[str] = []
    unsearchable: list[str] = []
    seen: set[str] = set()
    for container in containers:
        image_id = str(container.attrs.get("Image") or "")
        if not image_id or image_id in seen:
            continue
        seen.add(image_id)
        try:
            image = client.images.get(image_id)
        except Exception as exc:  # the SDK raises many kinds; all mean "cannot observe"
            raise containers_probe.engine_error(exc, f"inspecting image {image_id[:19]} of "
                                                f"{container.name}", float(client.api.timeout)) from None
        name = image.tags[0] if image.tags else image_id[:19]
        images.append(name)
        driver = image.attrs.get("GraphDriver") or {}
        data = driver.get("Data") or {}
        dirs = [d for d in [data.get("UpperDir"), *str(data.get("LowerDir") or "").split(":")] if d]
        missing = [d for d in dirs if not Path(d).is_dir()]
        if not dirs or missing:
            why = (f"storage driver {driver.get('Name', '?')!r} names no layer directories" if not dirs
                   else f"layer directory {missing[0]} is not readable from this host")
            unsearchable.append(f"{name}: {why}")
            continue
        for number, directory in enumerate(dirs):
            path = Path(directory)
            if path not in layers:
                # Overlay drivers keep each layer's files in ``<cache id>/diff``.
                layers[path] = f"{name} layer {len(dirs) - number} ({path.parent.name[:12]})"
    return ImageLayers(tuple((label, path) for path, label in layers.items()), tuple(images),
                       tuple(unsearchable))


def layer_files(root: str, errors: list[str]) -> Iterator[tuple[str, int]]:
    """(path, size) of every regular file under ``root``; symbolic links are not followed."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield entry.path, entry.stat(follow_symlinks=False).st_size
                    except OSError as exc:
                        errors.append(f"{entry.path}: {exc.strerror or type(exc).__name__}")
        except OSError as exc:
            errors.append(f"{folder}: {exc.strerror or type(exc).__name__}")


#: Largest ``direct_url.json`` / ``RECORD`` read from a layer (a RECORD lists one file a line).
_DIST_INFO_CAP = 4 << 20


def _read_capped(path: str) -> bytes | None:
    try:
        with open_regular(Path(path)) as stream:
            data = stream.read(_DIST_INFO_CAP + 1)
    except OSError:
        return None
    return data if data is not None and len(data) <= _DIST_INFO_CAP else None


def own_distribution_files(root: str, files: Iterable[str]) -> frozenset[str]:
    """The files (paths inside the image, ``/usr/...``) of the Python distributions a layer
    installed from a local directory or a version-control system (``pip install .``,
    ``pip install git+...``): the operator's own code, though it lies in ``site-packages``
    with the third-party packages from an index.

    pip records where such a distribution came from in its ``direct_url.json``
    (``dir_info`` or ``vcs_info``; a package from an index has none, a wheel file named
    by path has ``archive_info``) and lists its files in ``RECORD``. Either file
    unreadable, over 4 MiB or malformed: the distribution is not taken as the operator's.
    """
    own: set[str] = set()
    for path in files:
        if not path.endswith(".dist-info/direct_url.json"):
            continue
        raw = _read_capped(path)
        try:
            direct = json.loads(raw) if raw is not None else None
        except (ValueError, RecursionError):
            continue
        if not isinstance(direct, dict) or not {"dir_info", "vcs_info"} & direct.keys():
            continue
        info_dir = os.path.dirname(path)
        record = _read_capped(os.path.join(info_dir, "RECORD"))
        if record is None:
            continue
        site = os.path.dirname(info_dir)
        for row in csv.reader(record.decode("utf-8", "replace").splitlines()):
            if row and row[0]:
                inside = os.path.normpath(os.path.join(site, row[0]))
                if inside.startswith(root.rstrip("/") + "/"):
                    own.add("/" + os.path.relpath(inside, root))
    return frozenset(own)


def warm_image_layers(project: str | ContainerSelector, policy: Policy) -> threading.Thread:
    """Start asking the kernel to read every layer file of the project's images ahead.

    ``keys.no_key_elsewhere`` reads every byte of every image layer (1.5 GB for
    the reference stack): 3 s from the page cache, 16-21 s from this machine's
    disk. Started when the run starts, in a daemon thread, this only opens each
    file and advises the kernel it will be needed (``POSIX_FADV_WILLNEED``), so
    the disk reads overlap the checks that run before the search. It proves
    nothing and changes no result: anything it cannot do is left for the search
    itself to find and report.
    """
    def warm() -> None:
        try:
            client = docker_client(policy)
            try:
                layers = image_layers(project_containers(project, client), client)
            finally:
                client.close()
        except Exception:  # best effort: the search reports what the engine says
            return
        for _, root in layers.layers:
            for path, _size in layer_files(str(root), []):
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                except OSError:
                    pass
                finally:
                    os.close(fd)

    thread = threading.Thread(target=warm, name="votriz-audit-warm-layers", daemon=True)
    thread.start()
    return thread
