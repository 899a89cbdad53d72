"""Where the service's keys must not be, for the key search: what its platform lets the harness see.

Everything comes from the platform the profile describes (:mod:`harness.platform`):
the process environments (``processes()``), the source and configuration
paths and the image layers (``artifacts()``), the log directory and the
containers' output (``logs()``). What the platform cannot see is kept with
its :class:`~harness.platform.OutOfReach` reason, so the verdict can say why
a part was not searched instead of passing over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.platform import OutOfReach, Platform
from harness.probes.processes import ProcessObservation


@dataclass(frozen=True)
class SearchPlaces:
    """The places the key search reads, as the platform gave them.

    Attributes:
        source_paths: the profile's ``scan.source_paths``.
        config_paths: the profile's ``scan.config_paths``.
        log_dir: the directory of the service's log files (None: none named).
        processes: the service's processes; None when the platform cannot see them.
        processes_out_of_reach: why the processes cannot be seen (None when they were).
        container_logs: (``docker logs NAME``, bytes, truncated) per container.
        layers: (name, directory) per distinct layer of the containers' images.
        images: the images whose layers were listed.
        unsearchable: images whose layers could not be read, with why.
    """

    source_paths: tuple[Path, ...] = ()
    config_paths: tuple[Path, ...] = ()
    log_dir: Path | None = None
    processes: tuple[ProcessObservation, ...] | None = None
    processes_out_of_reach: OutOfReach | None = None
    container_logs: tuple[tuple[str, bytes, bool], ...] = ()
    layers: tuple[tuple[str, Path], ...] = ()
    images: tuple[str, ...] = ()
    unsearchable: tuple[str, ...] = ()

    def images_evidence(self) -> dict[str, Any]:
        """The images, layers and container logs searched, by name (JSON-able)."""
        return {"images": list(self.images), "layers": [label for label, _ in self.layers],
                "container_logs": [name for name, _, _ in self.container_logs],
                "unsearchable": list(self.unsearchable)}


def observe_search_places(platform: Platform, max_log_bytes: int) -> SearchPlaces:
    """The processes, files, logs and image layers of the service, as far as ``platform`` sees them.

    Each container's output is read up to ``max_log_bytes``.

    Raises:
        ProbeError: something in reach could not be observed (e.g. the Docker engine does not answer).
    """
    processes = platform.processes()
    logs = platform.logs(max_log_bytes)
    artifacts = platform.artifacts()
    layers = artifacts.layers
    outputs = () if isinstance(logs, OutOfReach) else logs.outputs
    return SearchPlaces(
        source_paths=tuple(artifacts.source_paths), config_paths=tuple(artifacts.config_paths),
        log_dir=None if isinstance(logs, OutOfReach) else logs.directory,
        processes=None if isinstance(processes, OutOfReach) else tuple(processes),
        processes_out_of_reach=processes if isinstance(processes, OutOfReach) else None,
        container_logs=tuple((log.where, log.data, log.truncated) for log in outputs),
        layers=layers.layers if layers is not None else (),
        images=layers.images if layers is not None else (),
        unsearchable=layers.unsearchable if layers is not None else ())
