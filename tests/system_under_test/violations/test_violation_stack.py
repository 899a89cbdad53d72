"""RunningStack on a real local stack: SQL as superuser, HSM session, Redis, edge reload, API log.

Each part is used the way a violation uses it, and the stack is left as found.
The HSM session runs in a child process (one stack's PKCS#11 per process).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from system_under_test.violations.stack import RunningStack, StackError

pytestmark = pytest.mark.integration


def test_finds_a_local_stack_from_its_state_directory(clean_stack) -> None:
    stack = RunningStack.open(clean_stack.state_dir)
    assert stack.backend == "local"
    assert stack.profile_path == clean_stack.profile_path
    assert stack.backup_dir == clean_stack.state_dir / "backups" and stack.backup_dir.is_dir()
    assert stack.api_log.is_file()
    assert stack.api_url == clean_stack.base_url


def test_sql_runs_as_the_superuser_and_returns_rows(clean_stack) -> None:
    stack = RunningStack.open(clean_stack.state_dir)
    assert stack.sql("SELECT current_user, current_database()") == [("postgres", "votriz")]
    assert stack.sql("SELECT count(*) FROM users")[0][0] >= 1
    assert stack.sql("SET LOCAL statement_timeout = 1000") == []


def test_hsm_session_and_redis_in_a_child(clean_stack) -> None:
    # Given a child process (PKCS#11 is initialised once per process)
    script = textwrap.dedent(f"""
        from system_under_test.violations.stack import RunningStack
        stack = RunningStack.open({str(clean_stack.state_dir)!r})
        with stack.hsm_session() as session:
            labels = sorted(str(o[0x3]) for o in session.get_objects())
        print(len(labels), any(label.startswith("votriz/") for label in labels))
        print(stack.redis().ping())
    """)
    # When it opens the HSM and Redis through the accessor
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    # Then it sees the service's keys and Redis answers
    assert done.returncode == 0, done.stderr[-2000:]
    count, namespaced = done.stdout.split("\n")[0].split()
    assert int(count) >= 10 and namespaced == "True"
    assert done.stdout.split("\n")[1] == "True"


def test_edit_edge_config_reloads_nginx_and_refuses_a_no_op(clean_stack) -> None:
    stack = RunningStack.open(clean_stack.state_dir)
    original = stack.edge_config.read_text(encoding="utf-8")
    try:
        stack.edit_edge_config(lambda text: text + "# violation test\n")
        assert stack.edge_config.read_text(encoding="utf-8").endswith("# violation test\n")
        with pytest.raises(StackError, match="changed nothing"):
            stack.edit_edge_config(lambda text: text)
    finally:
        stack.edit_edge_config(lambda _text: original)
    assert stack.edge_config.read_text(encoding="utf-8") == original


def test_edit_edge_config_reports_a_configuration_nginx_rejects(clean_stack) -> None:
    stack = RunningStack.open(clean_stack.state_dir)
    original = stack.edge_config.read_text(encoding="utf-8")
    try:
        with pytest.raises(StackError, match="refused the edited configuration"):
            stack.edit_edge_config(lambda text: text + "this is not nginx;\n")
    finally:
        stack.edit_edge_config(lambda _text: original)


def test_append_api_log_adds_one_line(clean_stack) -> None:
    stack = RunningStack.open(clean_stack.state_dir)
    size = stack.api_log.stat().st_size
    stack.append_api_log("violation test line")
    assert stack.api_log.read_text(encoding="utf-8")[size:] == "violation test line\n"
    with pytest.raises(ValueError):
        stack.append_api_log("two\nlines")
