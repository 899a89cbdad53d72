"""TLS stage, side by side: the harness's in-transit probes vs. bare sslyze and testssl.sh.

Same target, same run, repeated; prints the figures and writes them to
bench/results/transit.json. Without --target it stands up the reference
service (local backend) and tears it down afterwards.

    ./dev -- python bench/bench_transit.py [--target PROFILE] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checks.transit.hsts import hsts_verdict
from checks.transit.http_redirect_only import http_redirect_verdict
from checks.transit.security_headers import security_headers_verdict
from checks.transit.tls_versions import tls_versions_verdict
from harness.policy import load_policy
from harness.probes.http import fetch_samples
from harness.probes.tls import scan_tls
from harness.profile import TargetProfile, load_profile

RESULTS = Path(__file__).resolve().parent / "results"


def harness_stage(profile: TargetProfile) -> float:
    """One TLS scan (all versions + certificate + headers) plus the sampled HTTPS/HTTP responses, judged."""
    policy = load_policy()
    start = time.perf_counter()
    scan = scan_tls(profile.edge, policy)
    https = fetch_samples(profile.edge, policy, "https")
    http = fetch_samples(profile.edge, policy, "http")
    verdicts = [tls_versions_verdict(scan, policy), hsts_verdict(https, policy),
                security_headers_verdict(https, policy), http_redirect_verdict(http, profile.edge)]
    elapsed = time.perf_counter() - start
    assert all(v.outcome.value == "PASS" for v in verdicts), [v.message for v in verdicts]
    return elapsed


def sslyze_cli(profile: TargetProfile) -> float:
    """Bare sslyze CLI: every protocol version, certificate with the same CA, HTTP headers."""
    edge = profile.edge
    args = [sys.executable, "-m", "sslyze", "--quiet", "--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1",
            "--tlsv1_2", "--tlsv1_3", "--certinfo", "--http_headers",
            f"{edge.host}:{edge.https_port}{{{edge.connect_address}}}"]
    if edge.trust_anchor:
        args[4:4] = ["--certinfo_ca_file", str(edge.trust_anchor)]
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def testssl(profile: TargetProfile) -> float | None:
    """Debian's testssl.sh: protocols and headers only (less than the harness checks)."""
    binary = shutil.which("testssl") or shutil.which("testssl.sh")
    if binary is None:
        return None
    edge = profile.edge
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([binary, "--protocols", "--headers", "--quiet", "--color", "0", "--warnings", "off",
                        "--ip", edge.connect_address, "--jsonfile", f"{tmp}/out.json",
                        f"https://{edge.host}:{edge.https_port}"],
                       check=False, capture_output=True, timeout=900)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--target", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    state_dir = None
    if args.target is None:
        from system_under_test.local import stack

        state_dir = Path(tempfile.mkdtemp(prefix="bench-transit-"))
        args.target = stack.up(state_dir, ()).profile_path
    try:
        profile = load_profile(args.target)
        runs: dict[str, list[float]] = {"harness": [], "sslyze_cli": [], "testssl": []}
        for _ in range(args.repeat):
            runs["harness"].append(harness_stage(profile))
            runs["sslyze_cli"].append(sslyze_cli(profile))
        # testssl.sh takes tens of seconds per run: fewer repetitions.
        for _ in range(max(1, args.repeat // 2)):
            took = testssl(profile)
            if took is not None:
                runs["testssl"].append(took)
    finally:
        if state_dir is not None:
            stack.down(state_dir)
    medians = {name: statistics.median(values) for name, values in runs.items() if values}
    figures = {
        "machine": {"cores": __import__("os").cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "runs": runs,
        "median_s": medians,
        "harness_over_sslyze": medians["harness"] / medians["sslyze_cli"],
        "testssl_over_harness": (medians["testssl"] / medians["harness"]) if "testssl" in medians else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transit.json").write_text(json.dumps(figures, indent=2))
    for name, value in medians.items():
        print(f"{name:<12} median {value:7.2f} s over {len(runs[name])} run(s)")
    print(f"harness / sslyze CLI = {figures['harness_over_sslyze']:.2f}  (target <= 1.5)")
    if figures["testssl_over_harness"] is not None:
        print(f"testssl.sh / harness = {figures['testssl_over_harness']:.1f}  (target >= 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
