"""The README says what the code does: its commands, options, defaults and exit codes are the
ones ``votriz-audit --help`` prints, its example commands parse, its first screen holds the
two commands CI and a newcomer run, and its table of outcomes in JUnit, SARIF and OSCAL is
what the exporters write for a run holding every outcome.

Both sides are parsed: the README's Markdown tables and code blocks, and the help text the
command line prints (``votriz-audit COMMAND --help``, through the console script's ``main``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import os
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.claims import load_catalogue
from harness.cli import _build_parser, main
from harness.outcomes import Outcome
from harness.report.oscal import build_assessment_results
from harness.report.sarif import build_sarif
from harness.results import CheckResult, ClaimResult, RunResults, summarise, write_junit

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NO_DEFAULT = "—"


# --- reading the README --------------------------------------------------------------------

def section(heading: str, text: str | None = None) -> str:
    """The text under ``heading`` (a Markdown heading line, without the #s) up to the next
    heading of the same or a higher level."""
    text = README if text is None else text
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.M)
    assert match, f"README has no heading {heading!r}"
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``text``, cells stripped, ``\\|`` read as ``|``."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        if re.fullmatch(r"\|[-| :]+\|", line.strip()):
            rows.pop()  # the line above the separator is the table's header
            continue
        rows.append([cell.strip().replace("\\|", "|")
                     for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
    return rows


def code_blocks(text: str | None = None) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", README if text is None else text, re.M | re.S)


def unquote(cell: str) -> str:
    return cell.replace("`", "").strip()


def documented_commands() -> dict[str, list[tuple[str, str | None, str]]]:
    """Command reference: command -> [(option, metavar, default)], as the README's tables say."""
    reference = section("Command reference")
    commands = {}
    for match in re.finditer(r"^### `votriz-audit (\w+)`\n(.*?)(?=^### |\Z)", reference, re.M | re.S):
        rows = []
        for cells in table_rows(match.group(2)):
            words = unquote(cells[0]).split()
            rows.append((words[0], words[1] if len(words) > 1 else None, unquote(cells[1])))
        commands[match.group(1)] = rows
    return commands


# --- reading --help --------------------------------------------------------------------------

@functools.cache
def help_text(*command: str) -> str:
    """What ``votriz-audit COMMAND --help`` prints (the console script's ``main``, in this process,
    on a 250-column terminal so that argparse does not wrap an option's line)."""
    out = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "250"
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            main([*command, "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    assert exited.value.code == 0
    return out.getvalue()


def subcommands() -> list[str]:
    match = re.search(r"^usage: votriz-audit .*?\{([\w,]+)\}", help_text(), re.M)
    assert match, help_text()
    return match.group(1).split(",")


def help_options(command: str) -> dict[tuple[str, str | None], str]:
    """``command --help``: (option or positional, metavar) -> its help text, ``-h`` left out."""
    options: dict[tuple[str, str | None], str] = {}
    current: tuple[str, str | None] | None = None
    in_list = False
    for line in help_text(command).splitlines():
        if line in ("options:", "positional arguments:"):
            in_list = True
            continue
        if not line.strip():
            in_list, current = False, None
            continue
        if not in_list:
            continue
        entry = re.match(r"^  (\S.*?)(?:\s{2,}(.*))?$", line)
        if entry:
            # "-o FILE, --output FILE": the long form names the option (a positional has one form)
            forms = [form.split() for form in entry.group(1).split(", ")]
            flag, *metavar = next((form for form in forms if form[0].startswith("--")), forms[0])
            current = (flag, metavar[0] if metavar else None)
            options[current] = entry.group(2) or ""
        elif current is not None:
            options[current] += " " + line.strip()
    options.pop(("--help", None), None)
    return options


def help_default(text: str) -> str:
    """The default an option's help states (``default X`` / ``default: X``), without asides in
    parentheses; the empty string when it states none."""
    match = re.search(r"(\()?\bdefault:?\s+", text)
    if not match:
        return ""
    rest = text[match.end():]
    depth, end = 0, len(rest)
    for index, char in enumerate(rest):
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                end = index
                break
            depth -= 1
        elif char == ";" and depth == 0:
            end = index
            break
    phrase = re.sub(r"\s*\([^()]*\)", "", rest[:end])
    return " ".join(phrase.split())


# --- the tests -------------------------------------------------------------------------------

def test_the_parsers_read_what_they_should() -> None:
    # The help parser finds options with and without a metavar, and the default phrases
    run = help_options("run")
    assert run[("--report-dir", "DIR")].startswith("where to write results")
    assert ("--keep-up", None) in run
    assert help_options("diff").keys() == {("OLD", None), ("NEW", None)}
    assert help_default("where (default reports/<UTC time>; must be new)") == "reports/<UTC time>"
    assert help_default("default: docker where it runs (as for run), else local") == "docker where it runs, else local"
    assert help_default("the bundled one") == ""
    # The README parser reads a command's table
    assert ("--report-dir", "DIR", "reports/<UTC time>") in documented_commands()["run"]


def test_every_command_is_documented_with_exactly_its_options() -> None:
    documented = documented_commands()
    missing = [command for command in subcommands() if command not in documented]
    assert not missing, f"README's command reference lacks: {missing} (add a `### votriz-audit X` table)"
    unknown = [command for command in documented if command not in subcommands()]
    assert not unknown, f"README documents commands --help does not have: {unknown}"
    for command, rows in documented.items():
        in_readme = {(option, metavar) for option, metavar, _ in rows}
        in_help = set(help_options(command))
        assert in_readme - in_help == set(), f"{command}: in README, not in --help: {in_readme - in_help}"
        assert in_help - in_readme == set(), f"{command}: in --help, not in README: {in_help - in_readme}"


def test_every_default_is_the_one_help_states() -> None:
    for command, rows in documented_commands().items():
        options = help_options(command)
        for option, metavar, default in rows:
            said = help_default(options[(option, metavar)])
            readme = "" if default == NO_DEFAULT else default
            assert readme == said, f"{command} {option}: README says {default!r}, --help says {said!r}"


def test_the_exit_codes_are_the_ones_help_lists() -> None:
    in_readme = {int(cells[0]) for cells in table_rows(section("Exit codes"))}
    in_help = {int(code) for code in re.findall(r"^(\d{1,3})\s{2,}", help_text(), re.M)}
    assert in_readme == in_help == {0, 1, 2, 3, 4, 5, 141}
    # run --help lists the gate's codes too (141 concerns every command: the top-level help says it)
    assert {int(code) for code in re.findall(r"^(\d)\s{2,}", help_text("run"), re.M)} == in_readme - {141}


def test_the_readme_s_example_commands_parse() -> None:
    commands = [line.split("#")[0].strip() for block in code_blocks() for line in block.splitlines()
                if line.startswith("votriz-audit ")]
    assert len(commands) >= 8
    for command in commands:
        argv = shlex.split(command)[1:]
        try:
            _build_parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"README: `{command}` is refused by the command line (exit {exc.code})")


def test_the_first_screen_has_the_two_commands_ci_runs_one_of() -> None:
    first_screen = README.split("\n## ", 1)[0]
    block = code_blocks(first_screen)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["./dev audit", "./dev test"]
    # ./dev has both, and CI runs the same test command
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    assert re.search(r"^\s+audit\)\s+install; exec .*votriz-audit\" run", dev, re.M)
    assert re.search(r"^\s+test\)\s+install; exec .*-m pytest", dev, re.M)
    assert re.search(r"^\./dev test\b", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)
    # The screenshot it shows is in the repository
    image = re.search(r"!\[[^\]]+\]\(([^)]+)\)", first_screen)
    assert image and (ROOT / image.group(1)).is_file()
    assert len(first_screen.splitlines()) <= 30


def test_the_files_and_workflows_the_readme_names_exist() -> None:
    named = set(re.findall(r"`((?:fixtures|\.github|reports|bench|system_under_test)/[\w./-]+)`", README))
    named |= set(re.findall(r"\]\(((?:fixtures|bench|reports)/[\w./-]+)\)", README))
    assert named
    assert [path for path in sorted(named) if not (ROOT / path).exists()] == []


# --- outcomes in JUnit, SARIF and OSCAL -------------------------------------------------------

OUTCOMES = list(Outcome)


def _run_with_every_outcome() -> RunResults:
    """A run whose checks end in every outcome, one each, and whose promises do too (plus one
    not run)."""
    catalogue = load_catalogue()
    check_ids = sorted(catalogue.check_ids())[:len(OUTCOMES)]
    results = [CheckResult(finding_id=f"{check_id}/x", check_id=check_id, claims=("C",), outcome=outcome,
                           message=f"{outcome.value} by hand")
               for check_id, outcome in zip(check_ids, OUTCOMES, strict=True)]
    claims = [ClaimResult(id=f"C-{outcome.value if outcome else 'NOT-RUN'}", section="s", text="a promise",
                          outcome=outcome, checks=())
              for outcome in [*OUTCOMES, None]]
    started = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    return RunResults(run_id="readme000001", started_at=started, finished_at=started + dt.timedelta(seconds=9),
                      target={"name": "t", "backend": "local", "edge": "https://t.test"},
                      policy={"name": "p", "version": "1"}, catalogue={"title": "page", "page": "p.md"},
                      summary=summarise(results, claims), results=tuple(results), claims=tuple(claims))


def exporters_mapping(tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    """Outcome (or ``not run``) -> (JUnit testcase, SARIF level, OSCAL state / reason), as the
    exporters write them."""
    run = _run_with_every_outcome()
    write_junit(run, tmp_path / "junit.xml")
    junit = {}
    for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase"):
        outcome = next(p.get("value") for p in case.iter("property") if p.get("name") == "outcome")
        tags = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        junit[outcome] = tags[0] if tags else "passed"
    sarif_levels = {r["properties"]["outcome"]: r["level"] for r in build_sarif(run)["runs"][0]["results"]}
    findings = {}
    for finding in build_assessment_results(run).results[0].findings:
        status = finding.target.status
        state = status.state.value if hasattr(status.state, "value") else str(status.state)
        findings[finding.target.target_id] = f"{state} / {status.reason}"
    mapping = {outcome.value: (junit[outcome.value], sarif_levels.get(outcome.value, "none"),
                               findings[f"C-{outcome.value}"]) for outcome in OUTCOMES}
    mapping["not run"] = ("—", "—", findings["C-NOT-RUN"])
    return mapping


def readme_mapping() -> dict[str, tuple[str, str, str]]:
    def first_word(cell: str) -> str:
        return unquote(cell).split()[0]

    rows = table_rows(section("Outcomes in JUnit, SARIF and OSCAL"))
    return {unquote(cells[0]): (first_word(cells[1]), first_word(cells[2]), unquote(cells[3]))
            for cells in rows}


def test_the_readme_s_outcome_mapping_is_what_the_exporters_write(tmp_path: Path) -> None:
    assert readme_mapping() == exporters_mapping(tmp_path)


# --- running the checks with plain pytest ----------------------------------------------------

def test_the_plain_pytest_options_are_the_plugin_s(tmp_path: Path) -> None:
    import subprocess
    import sys

    text = section("Running the checks with plain pytest")
    commands = [line for block in code_blocks(text) for line in block.splitlines() if "pytest " in line]
    assert commands
    # Given the README's first command (its arguments after the word pytest), asking for the
    # plugin's help instead of running
    words = shlex.split(commands[0])
    argv = words[next(i for i, word in enumerate(words) if word.endswith("pytest")) + 1:]
    plugin_args = [word for word in argv if not word.startswith("--votriz")]
    done = subprocess.run([sys.executable, "-m", "pytest", *plugin_args, "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # Then the plugin has exactly the --votriz-… options the README names
    in_help = set(re.findall(r"^\s+(--votriz-[\w-]+)", done.stdout, re.M))
    in_readme = set(re.findall(r"--votriz-[\w-]+", text))
    assert in_help and in_readme == in_help
