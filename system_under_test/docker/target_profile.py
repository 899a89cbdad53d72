"""``STATE/target.toml`` of a Docker stack: the harness's view of it, from the Docker host.

The auditor runs on the Docker host and reaches what publishes nothing
the way an operator of that host could: PostgreSQL through its unix
socket (``STATE/run/pg``, bind-mounted), the HSM through the auditor's
p11-kit socket (``STATE/run/p11-audit``), Redis and the fakes at their
addresses on the internal network (a Linux host routes to its bridges).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from system_under_test.common.pki import FAKES_HOST
from system_under_test.common.profile import ProfileFacts, render_profile
from system_under_test.docker import topology
from system_under_test.docker.topology import StackPaths


def ops_command(command: str) -> list[str]:
    """``python -m system_under_test.ops COMMAND --state-dir /var/lib/votriz``, as the API image runs it."""
    return ["python", "-m", "system_under_test.ops", command, "--state-dir", str(topology.CONTAINER_STATE)]


def ops_argv(command: str, container: str) -> list[str]:
    """:func:`ops_command` in the running ``container``, handed the auditor's ``VOTRIZ_AUDIT_RUN``
    (``-e NAME`` passes the client's value, if it has one), so a drill can record who asked."""
    return ["docker", "exec", "-e", "VOTRIZ_AUDIT_RUN", container, *ops_command(command)]


#: Run inside the API container: ``python -c OPS_SEQUENCE COMMAND...`` runs each ``ops`` command
#: in turn in one interpreter, as ``python -m system_under_test.ops COMMAND`` would, and exits 1
#: after the first that fails (its ``error: COMMAND: ...`` line is the last of the output).
OPS_SEQUENCE = ("import sys\n"
                "from system_under_test.ops.__main__ import main\n"
                "for command in sys.argv[1:]:\n"
                "    if main([command, '--state-dir', {state!r}]) != 0:\n"
                "        sys.exit(1)\n")


def ops_sequence_argv(commands: Sequence[str]) -> list[str]:
    """``python -c OPS_SEQUENCE COMMAND...``: the ``ops`` commands one after another in one process."""
    return ["python", "-c", OPS_SEQUENCE.format(state=str(topology.CONTAINER_STATE)), *commands]


def render_docker_profile(state_dir: Path, project: str, containers: Mapping[str, str], *,
                          https_port: int, http_port: int, redis_address: str,
                          fakes_address: str) -> str:
    """The text of ``target.toml``: a harness TargetProfile for this Docker stack."""
    paths = StackPaths.under(state_dir)
    api = containers["api"]
    return render_profile(state_dir, ProfileFacts(
        name="votriz-reference-docker", backend="docker",
        header="# Target profile of a Docker Votriz reference stack (written by `up`).\n",
        https_port=https_port, http_port=http_port,
        database_host=str(paths.pg_socket_dir), database_port=topology.POSTGRES_PORT,
        hsm_module=topology.P11_CLIENT_MODULE, pin_file=paths.pin_file,
        # Addresses and paths only: p11-kit's client finds the server through the first;
        # the second names SoftHSM's token directory, which only the HSM may hold open.
        hsm_env={"P11_KIT_SERVER_ADDRESS": f"unix:path={paths.p11_audit_dir / 'sock'}",
                 "SOFTHSM2_CONF": str(paths.softhsm_conf)},
        redis_host=redis_address, redis_port=topology.REDIS_PORT,
        capture={"url": f"https://{fakes_address}:{topology.FAKES_PORT}",
                 "server_name": FAKES_HOST, "plaintext_port": topology.FAKES_PLAINTEXT_PORT},
        runtime=("docker", {"compose_project": project, "edge_container": containers["edge"],
                            "log_dir": str(paths.logs_dir)}),
        config_paths=[paths.api_config, paths.edge_config_dir / "nginx.conf", paths.softhsm_conf],
        ops=lambda command: ops_argv(command, api),
        backup_dir=paths.backups_dir, drill_log=paths.drill_log,
    ))
