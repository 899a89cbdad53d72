"""Render the example runs into OUT_DIR and take the raw screenshots the examples were cut from.

    .venv/bin/python reports/examples/make_examples.py /tmp/examples

Needs Debian's chromium. The PNGs kept here were cropped from OUT_DIR's
screenshots and looked at by a person before they were committed.
"""

import datetime as dt
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from harness.outcomes import Outcome
from harness.report.calibration import Calibration, DetectionRow
from harness.report.commands import finalize

spec = importlib.util.spec_from_file_location(
    "report_conftest",
    str(Path(__file__).resolve().parents[2] / "tests" / "harness" / "report" / "conftest.py"),
)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
mod.build_run(out / "clean", fault=False)
mod.build_run(out / "fault", fault=True)
cal = Calibration(
    created_at=mod.T0,
    rows=(
        DetectionRow(
            fault="tls12_enabled",
            description="The edge also accepts TLS 1.2",
            claims=("TRANSIT-TLS13",),
            expected_check="transit.tls_versions",
            observed_outcome=Outcome.FAIL,
            run_id="fault0000001",
        ),
        DetectionRow(
            fault="bcrypt_cost_10",
            description="New passwords hashed with cost 10",
            claims=("REST-PASSWORDS-BCRYPT12",),
            expected_check="at_rest.password_hashes",
            observed_outcome=Outcome.FAIL,
        ),
        DetectionRow(
            fault="jwt_secret_in_env_file",
            description="JWT secret copied into .env",
            claims=("KEYS-NOT-ON-DISK",),
            expected_check="keys.no_key_elsewhere",
            observed_outcome=Outcome.PASS,
        ),
        DetectionRow(
            fault="clean",
            description="No fault",
            expected_check="transit.hsts",
            expected_outcome=Outcome.PASS,
            observed_outcome=Outcome.PASS,
        ),
    ),
)
(out / "fault" / "calibration.json").write_text(cal.model_dump_json(indent=2))
now = dt.datetime(2026, 11, 30, 21, 5, tzinfo=dt.UTC)
finalize(out / "clean", None, now=now)
finalize(out / "fault", None, against=out / "clean", now=now)


def shot(page, png, size):
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={out}/profile",
            f"--screenshot={png}",
            f"--window-size={size}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


shot(out / "fault" / "report.html", out / "fault-desktop.png", "1280,900")
shot(out / "fault" / "report.html", out / "fault-phone.png", "390,844")
shot(out / "clean" / "report.html", out / "clean-desktop.png", "1280,900")
shot(out / "fault" / "report.html", out / "fault-full.png", "1280,20000")
shot(out / "fault" / "report.html", out / "fault-phone-full.png", "390,30000")
subprocess.run(
    [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={out}/profile",
        f"--print-to-pdf={out}/fault.pdf",
        "--no-pdf-header-footer",
        (out / "fault" / "report.html").as_uri(),
    ],
    check=True,
    capture_output=True,
    timeout=180,
)
print("ok")
