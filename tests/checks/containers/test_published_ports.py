"""containers.published_ports on hand-made topologies."""

from __future__ import annotations

from pathlib import Path

from checks.containers.published_ports import check_published_ports, published_ports_verdict
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes.containers import ContainerTopology, PublishedPort
from harness.probes.listeners import ListenerScan, ListeningSocket
from harness.profile import TargetProfile

from .conftest import PUBLIC, clean, conclude, container

LOCAL = TargetProfile.model_validate({"name": "t", "backend": "local", "edge": {"host": "votriz.test"}})


def test_clean_topology_passes() -> None:
    assert published_ports_verdict(clean(), None).outcome is Outcome.PASS


def test_published_database_port_fails_naming_container_and_port() -> None:
    topo = clean()
    db = container("db", "db", [PublishedPort("5432/tcp", "0.0.0.0", 5432)])
    verdict = published_ports_verdict(ContainerTopology("votriz", "h", False, (topo.containers[0], db)), None)
    assert verdict.outcome is Outcome.FAIL
    assert "db publishes 5432/tcp on 0.0.0.0:5432 (only the edge may publish ports)" in verdict.message


def test_edge_publishing_another_port_fails() -> None:
    edge = container("edge", "edge", [PublishedPort("8080/tcp", "0.0.0.0", 8080)], [PUBLIC])
    verdict = published_ports_verdict(ContainerTopology("v", "h", False, (edge,)), None)
    assert verdict.outcome is Outcome.FAIL and "only 80/tcp and 443/tcp" in verdict.message


def test_no_containers_is_an_error_not_a_pass() -> None:
    empty = ContainerTopology("votriz", "h", False, ())
    verdict = published_ports_verdict(empty, "edge")
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == "no running container carries the label votriz.project=votriz: nothing to judge"


def test_the_check_judges_the_topology_with_the_profiles_edge(tmp_path: Path) -> None:
    verdict, _ = conclude(check_published_ports, tmp_path, docker_topology=clean(), profile=LOCAL,
                          policy=load_policy())
    assert verdict.outcome is Outcome.PASS and "only the edge (edge) publishes ports" in verdict.message


def _host_sockets(*sockets: tuple[str, str, int], unreadable: tuple[str, ...] = ()) -> ListenerScan:
    return ListenerScan(tuple(ListeningSocket(name, 7, "httpd", address, port, "tcp", port)
                              for name, address, port in sockets), unreadable)


def test_a_container_on_the_host_network_listening_on_a_public_address_fails() -> None:
    # Given a metrics container sharing the host's network, listening on every host address
    topo = clean()
    metrics = container("metrics", "metrics", networks=(), network_mode="host")
    both = ContainerTopology("votriz", "h", False, (*topo.containers, metrics))
    verdict = published_ports_verdict(both, None, _host_sockets(("metrics", "0.0.0.0", 9100),
                                                                ("metrics", "127.0.0.1", 9101)))
    # Then it fails on the public one (loopback stays on the host), though nothing is published
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert verdict.message == ("1 port binding(s) break the promise: metrics shares the host's network and "
                               "listens on 0.0.0.0:9100 (httpd, pid 7) there (not published, exposed all "
                               "the same; only the edge may expose ports)")
    # And without its sockets read, or with some unreadable, it is not a pass
    assert published_ports_verdict(both, None).outcome is Outcome.ERROR
    unread = published_ports_verdict(both, None, _host_sockets(unreadable=("/proc/7/net/tcp: denied",)))
    assert unread.outcome is Outcome.ERROR and "/proc/7/net/tcp: denied" in unread.message
    quiet = published_ports_verdict(both, None, _host_sockets(("metrics", "127.0.0.1", 9101),
                                                              ("metrics", "::ffff:7f00:1", 9102)))
    assert quiet.outcome is Outcome.PASS
    assert "metrics shares the host's network and listens on no public address there" in quiet.message
