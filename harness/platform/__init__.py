"""Where the audited service runs, seen from the auditor's side: one platform per kind of deployment.

:func:`platform_for` is the one place that reads the profile's ``backend``;
checks ask the platform it returns, never the profile, what they can see:

================  ======================  ==========================  ====================
method            ``local``               ``docker``                  ``remote``
================  ======================  ==========================  ====================
``processes()``   ``[local]`` pid files   containers' config + /proc  out of reach
``logs(n)``       ``local.log_dir``       ``docker.log_dir`` + output  the profile's log dir
``listeners()``   /proc sockets           containers' /proc sockets   out of reach
``artifacts()``   ``[scan]`` paths        ``[scan]`` + image layers   ``[scan]`` paths
``topology()``    out of reach            the engine's containers     out of reach
================  ======================  ==========================  ====================

"Out of reach" is an :class:`OutOfReach` with its reason, never an empty
observation; a local profile without processes, or a docker one without its
``[docker]`` section, has its processes and listeners out of reach too.

How the checks that search for secrets get what they search:

- ``keys.no_key_elsewhere`` (the key search, :func:`harness.keysearch.search_target`, its
  places gathered by :func:`harness.probes.deployment.observe_search_places`):
  the process environments are ``processes()`` (None to ``search_target`` when
  out of reach); the source and configuration paths are ``artifacts().source_paths``
  and ``.config_paths``; the image layers are ``artifacts().layers.layers`` (with
  ``.images`` and ``.unsearchable`` for the evidence; ``layers`` is None off
  Docker); the log files are ``logs(max_log_bytes).directory`` and the container
  logs ``[(log.where, log.data, log.truncated) for log in logs(...).outputs]``
  (``max_log_bytes`` from ``key-classes.toml``'s ``[search]``).
- ``keys.read_at_start``: ``processes()``; out of reach is MANUAL.
- ``at_rest.plaintext_sweep``'s log areas: ``logs(256 << 20)``: the files under
  ``directory`` and each container output in ``outputs`` (one with ``truncated``
  set was searched only up to the limit); out of reach is an area not swept,
  with ``reason`` as its note.
- ``transit.origin_not_plaintext``: ``listeners()``; out of reach is MANUAL.
- ``containers.*``: ``topology()``; out of reach is NOT_APPLICABLE.
"""

from __future__ import annotations

from harness.platform.base import OutOfReach, Platform, PlatformKind, ServiceArtifacts, ServiceLogs
from harness.platform.docker import DockerPlatform
from harness.platform.local import LocalPlatform
from harness.platform.remote import RemotePlatform
from harness.policy import Policy
from harness.profile import TargetProfile

__all__ = ["DockerPlatform", "LocalPlatform", "OutOfReach", "Platform", "PlatformKind",
           "RemotePlatform", "ServiceArtifacts", "ServiceLogs", "platform_for"]


def platform_for(profile: TargetProfile, policy: Policy) -> Platform:
    """The platform the profile describes.

    ``backend = "docker"`` with a ``[docker]`` section is Docker; ``backend =
    "local"`` is local (its ``[local]`` section may still be missing); anything
    else, a Docker backend without its section included, is remote.
    """
    if profile.backend == "docker" and profile.docker is not None:
        return DockerPlatform(profile, policy, profile.docker)
    if profile.backend == "local":
        return LocalPlatform(profile, policy)
    return RemotePlatform(profile, policy)
