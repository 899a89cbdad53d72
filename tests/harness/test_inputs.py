"""The audit's inputs: loaded once per run, a bad file is one typed error naming the file and key."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import cli, cli_run, inputs
from harness.cli import EXIT_PASS
from harness.inputs import InputError, load_inputs, load_rules
from harness.policy import DEFAULT_POLICY_PATH

CHECK = '''
import pytest
from harness.outcomes import Verdict

@pytest.mark.claims("TRANSIT-HSTS")
def check_hsts(profile, policy, evidence):
    evidence.conclude(Verdict.passed(f"{profile.name} judged under {policy.name}"))
'''


def _profile(tmp_path: Path) -> Path:
    path = tmp_path / "target.toml"
    path.write_text('name = "unit"\n[edge]\nhost = "votriz.test"\naddress = "127.0.0.1"\nhttps_port = 9\n')
    return path


def _count(monkeypatch: pytest.MonkeyPatch, calls: Counter[str], name: str) -> None:
    real: Callable[..., Any] = getattr(inputs, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(inputs, name, counted)


def test_a_run_loads_each_input_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a checks folder with one check, and every loader counted
    checks = tmp_path / "checks"
    (checks / "transit").mkdir(parents=True)
    # check_hsts in transit/ is transit.hsts, the whole of TRANSIT-HSTS (a module name of its own:
    # this run imports it into the test process, where pytester's runs must not find it)
    (checks / "transit" / "seen_once.py").write_text(CHECK)
    monkeypatch.setattr(cli_run, "CHECKS_DIR", checks)
    calls: Counter[str] = Counter()
    for name in ("load_profile", "load_policy", "load_catalogue", "load_waivers"):
        _count(monkeypatch, calls, name)
    report = tmp_path / "report"
    # When `votriz-audit run --target` audits it (pytest in this process)
    code = cli.main(["run", "--target", str(_profile(tmp_path)), "--report-dir", str(report)])
    # Then every input was loaded exactly once, and the check saw what the command line loaded
    assert code == EXIT_PASS
    assert calls == {"load_profile": 1, "load_policy": 1, "load_catalogue": 1, "load_waivers": 1}
    data = json.loads((report / "results.json").read_text())
    assert data["results"][0]["message"] == "unit judged under votriz-default"
    assert data["policy"]["path"] == str(DEFAULT_POLICY_PATH)


def test_the_loaded_inputs_carry_the_policy_file_and_its_digest(tmp_path: Path) -> None:
    loaded = load_inputs(_profile(tmp_path))
    assert loaded.profile.name == "unit" and loaded.profile_path == tmp_path / "target.toml"
    assert loaded.rules.policy_path == DEFAULT_POLICY_PATH
    assert len(loaded.rules.policy_sha256) == 64
    assert loaded.rules.catalogue.by_id()["TRANSIT-HSTS"].checks == ("transit.hsts",)
    assert len(loaded.rules.waivers.waiver) == 0


@pytest.mark.parametrize(("file", "text", "message"), [
    ("policy.toml", '[timeouts]\nconnect_s = "soon"\n', "timeouts.connect_s"),
    ("waivers.toml", '[[waiver]]\ncheck = "transit.hsts"\n', "waiver[0].justification: Field required"),
    ("claims.toml", 'page = "p.md"\n', "claim: Field required"),
])
def test_a_bad_input_is_one_typed_error_naming_file_and_key(tmp_path: Path, file: str, text: str,
                                                            message: str) -> None:
    path = tmp_path / file
    path.write_text(text)
    which = {"policy.toml": "policy", "waivers.toml": "waivers", "claims.toml": "claims"}[file]
    with pytest.raises(InputError) as exc:
        load_rules(**{which: path})
    assert exc.value.path == path
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)


def test_a_bad_profile_names_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "target.toml"
    path.write_text('name = "x"\n[edge]\nhost = 3\n')
    with pytest.raises(InputError) as exc:
        load_inputs(path)
    assert exc.value.path == path and f"{path}: edge.host" in str(exc.value)
