"""Container logs and image layers as the Docker engine describes them (SDK objects faked)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.probes.docker_engine import container_logs, image_layers


def image(tag: str, driver: str, data: dict[str, str]) -> SimpleNamespace:
    return SimpleNamespace(tags=[tag], attrs={"GraphDriver": {"Name": driver, "Data": data}})


def test_layers_of_each_image_once_and_unreadable_images_named(tmp_path: Path) -> None:
    shared, api_top, db_top = (tmp_path / name / "diff" for name in ("aaaa", "bbbb", "cccc"))
    for directory in (shared, api_top, db_top):
        directory.mkdir(parents=True)
    images = {
        "sha256:api": image("votriz/api:1", "overlay2", {"UpperDir": str(api_top), "LowerDir": str(shared)}),
        "sha256:db": image("votriz/db:1", "overlay2", {"UpperDir": str(db_top), "LowerDir": str(shared)}),
        "sha256:vfs": image("other/x:1", "vfs", {}),
    }
    client = SimpleNamespace(images=SimpleNamespace(get=images.__getitem__))
    containers = [SimpleNamespace(name=name, attrs={"Image": image_id}) for name, image_id in
                  (("api", "sha256:api"), ("worker", "sha256:api"), ("db", "sha256:db"), ("x", "sha256:vfs"))]
    found = image_layers(containers, client)
    assert found.images == ("votriz/api:1", "votriz/db:1", "other/x:1")
    # The shared base layer is searched once, under the first image that has it
    assert found.layers == (("votriz/api:1 layer 2 (bbbb)", api_top), ("votriz/api:1 layer 1 (aaaa)", shared),
                            ("votriz/db:1 layer 2 (cccc)", db_top))
    assert found.unsearchable == ("other/x:1: storage driver 'vfs' names no layer directories",)


def test_logs_are_read_up_to_the_bound_and_say_when_cut() -> None:
    def logs(**kwargs: object) -> list[bytes]:
        assert kwargs == {"stdout": True, "stderr": True, "stream": True, "follow": False}
        return [b"a" * 6, b"b" * 6]

    short, long_ = (SimpleNamespace(name=name, logs=logs) for name in ("edge", "api"))
    assert [(log.where, log.data, log.truncated) for log in container_logs([short], 100)] == [
        ("docker logs edge", b"aaaaaabbbbbb", False)]
    assert [(log.data, log.truncated) for log in container_logs([long_], 8)] == [(b"aaaaaabb", True)]


def test_warming_layers_advises_every_regular_file_and_never_raises(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.policy import load_policy
    from harness.probes import docker_engine

    # Given two layer directories with files, a link and an unreadable entry
    for layer in ("one", "two"):
        (tmp_path / layer / "etc").mkdir(parents=True)
        (tmp_path / layer / "etc" / "a.conf").write_text("a")
    (tmp_path / "two" / "big.bin").write_bytes(bytes(4096))
    (tmp_path / "two" / "link").symlink_to("/etc/passwd")
    layers = docker_engine.ImageLayers(
        tuple((f"img layer {n}", tmp_path / n) for n in ("one", "two")), ("img",), ())
    advised: list[str] = []
    monkeypatch.setattr(docker_engine, "docker_client", lambda policy: SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(docker_engine, "project_containers", lambda project, client: [])
    monkeypatch.setattr(docker_engine, "image_layers", lambda containers, client: layers)
    real_fadvise = docker_engine.os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        assert (offset, length, advice) == (0, 0, docker_engine.os.POSIX_FADV_WILLNEED)
        advised.append(docker_engine.os.readlink(f"/proc/self/fd/{fd}"))
        real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(docker_engine.os, "posix_fadvise", record)
    # When the warm-up runs, Then every regular file was advised, the link was not followed
    docker_engine.warm_image_layers("p", load_policy()).join(10)
    assert sorted(advised) == sorted(str(tmp_path / p) for p in
                                     ("one/etc/a.conf", "two/etc/a.conf", "two/big.bin"))

    # And an engine that cannot be reached ends the warm-up quietly
    def gone(policy: object) -> None:
        raise docker_engine.ProbeError("no engine")

    monkeypatch.setattr(docker_engine, "docker_client", gone)
    thread = docker_engine.warm_image_layers("p", load_policy())
    thread.join(10)
    assert not thread.is_alive()
