"""The load generator is honest: every call counted, outages reported."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from harness.load import LoadCall, SteadyLoad, percentile
from harness.outcomes import ProbeError


class _Counter(BaseHTTPRequestHandler):
    served = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with _Counter.lock:
            _Counter.served += 1
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def _serve(port: int) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _caller(port: int):
    local = threading.local()

    def call(worker: int, iteration: int) -> LoadCall:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=2.0)
        try:
            answer = local.client.get(f"http://127.0.0.1:{port}/")
        except httpx.HTTPError as exc:
            return LoadCall("get", False, None, type(exc).__name__)
        return LoadCall("get", answer.status_code == 200, answer.status_code)

    return call


@pytest.mark.slow
def test_reports_failures_while_the_server_is_briefly_stopped() -> None:
    # Given a local server under steady load ...
    server, _ = _serve(0)
    port = server.server_address[1]
    _Counter.served = 0
    load = SteadyLoad(_caller(port), 3)
    load.start()
    time.sleep(0.8)
    # ... when it is stopped for a moment and started again ...
    load.mark("stopping server")
    server.shutdown()  # (returns once the serving loop has noticed, up to 0.5 s later)
    server.server_close()
    load.mark("server stopped")
    time.sleep(0.6)
    server, _ = _serve(port)
    load.mark("server restarted")
    time.sleep(0.8)
    report = load.stop()
    server.shutdown()
    server.server_close()
    # ... then the outage shows as connection errors, and nothing is lost.
    totals = report.totals()
    stopping = report.marker("stopping server")
    down, up = report.marker("server stopped"), report.marker("server restarted")
    assert stopping is not None and down is not None and up is not None
    assert totals.connection_errors > 0 and totals.ok > 0
    # (The new server accepts from its bind, a moment before the marker.)
    assert report.window(down + 0.05, up - 0.05).ok == 0
    # Calls in flight at the shutdown may fail too; all before it succeeded.
    assert report.window(0, stopping - 0.2).errors == 0
    assert totals.ok == _Counter.served
    assert totals.requests == totals.ok + totals.errors == len(report.attempts)
    assert sum(bucket.requests for bucket in report.timeline(0.5)) == totals.requests
    assert sum(bucket.errors for bucket in report.timeline(0.5)) == totals.errors
    assert any("server stopped" in bucket.markers for bucket in report.timeline())


@pytest.mark.parametrize("failure", [ProbeError("GET /x: no answer within 5s"),
                                     httpx.ConnectError("refused"), ConnectionResetError()])
def test_a_service_failure_raised_by_a_call_is_a_counted_failure(failure: Exception) -> None:
    def call(worker: int, iteration: int) -> LoadCall:
        if iteration % 2:
            raise failure
        return LoadCall("op", True, 200)

    load = SteadyLoad(call, 2)
    load.start()
    time.sleep(0.05)
    report = load.stop()
    totals = report.totals()
    assert totals.errors > 0 and totals.error_kinds == {type(failure).__name__: totals.errors}
    assert totals.connection_errors == totals.errors
    assert report.defects == ()


def test_any_other_exception_is_a_harness_defect_not_a_failed_request() -> None:
    # Given a call whose own code breaks on its second iteration
    def call(worker: int, iteration: int) -> LoadCall:
        if iteration == 1:
            raise RuntimeError("boom")
        return LoadCall("op", True, 200)

    load = SteadyLoad(call, 2)
    load.start()
    time.sleep(0.05)
    report = load.stop()
    # Then no request is counted as failed, and each broken thread is named as a defect
    assert report.totals().errors == 0 and report.totals().ok == 2
    assert len(report.defects) == 2
    assert all(d.startswith(("worker 0: RuntimeError at ", "worker 1: RuntimeError at "))
               and "test_load.py:" in d for d in report.defects)


def test_a_call_in_flight_at_stop_is_a_failure() -> None:
    release = threading.Event()

    def call(worker: int, iteration: int) -> LoadCall:
        release.wait(5)
        return LoadCall("slow", True, 200)

    load = SteadyLoad(call, 1, stop_timeout_s=0.1)
    load.start()
    time.sleep(0.05)
    report = load.stop()
    release.set()
    assert [a.error for a in report.attempts] == ["still in flight when the load stopped"]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 50) == 50.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
