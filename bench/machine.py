"""What the benchmarks record about the machine they ran on."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` if unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded: the figures' conditions."""
    return [round(x, 2) for x in os.getloadavg()]


MIB = 1 << 20


def _children_map() -> dict[int, list[int]]:
    """Every process's children, from /proc/*/stat (this kernel has no task/*/children)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The fields after the command's closing parenthesis: state, ppid, ...
        ppid = int(stat[stat.rindex(")") + 2:].split(maxsplit=2)[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _status_kib(pid: int) -> dict[str, int]:
    figures = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                figures[line[:5]] = int(line.split()[1])
    except OSError:
        pass
    return figures


class ProcessTreePeaks:
    """The peaks of every process this one starts, sampled every ``interval`` seconds in a
    thread while the ``with`` block runs (every ``first_interval`` seconds during the first
    ``first_seconds``, for short runs; a sample costs ~20 ms of CPU with 300 processes on
    the machine, so 1 s keeps the sampler near 2% of a core): the measured child, its
    workers and their threads (a thread's memory is its process's). Per sample, the
    resident memory of all of them
    together, and the temporary disk they hold under ``temp_dir``: the files in it and the
    files deleted but still open there (``tempfile.TemporaryFile``), each inode counted
    once by its allocated blocks. Also each process's own high-water mark (``VmHWM``, exact
    for that process up to its last sample): their sum bounds the together-peak from above.
    Processes whose command line holds one of ``exclude`` are not the audit's (the
    multiprocessing resource tracker)."""

    def __init__(self, temp_dir: Path, interval: float = 1.0, first_interval: float = 0.1,
                 first_seconds: float = 5.0,
                 exclude: tuple[str, ...] = ("resource_tracker",)) -> None:
        self.temp_dir, self.interval, self.exclude = str(temp_dir), interval, exclude
        self.first_interval, self.first_seconds = min(first_interval, interval), first_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-peaks", daemon=True)
        self._hwm_kib: dict[int, int] = {}
        self._excluded: dict[int, bool] = {}
        self.rss_peak_kib = self.temp_peak_bytes = self.samples = 0
        self.processes_peak = 0

    def __enter__(self) -> ProcessTreePeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while True:
            self.sample()
            fast = time.monotonic() - started < self.first_seconds
            if self._stop.wait(self.first_interval if fast else self.interval):
                return

    def _descendants(self) -> list[int]:
        children, found, queue = _children_map(), [], [os.getpid()]
        while queue:
            for child in children.get(queue.pop(), ()):
                if child not in self._excluded:
                    try:
                        command = Path(f"/proc/{child}/cmdline").read_bytes()
                    except OSError:
                        continue
                    self._excluded[child] = any(e.encode() in command for e in self.exclude)
                if not self._excluded[child]:
                    found.append(child)
                    queue.append(child)
        return found

    def _temp_inodes(self, pids: list[int]) -> dict[tuple[int, int], int]:
        inodes: dict[tuple[int, int], int] = {}
        for folder, _, files in os.walk(self.temp_dir):
            for name in files:
                try:
                    stat = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                inodes[(stat.st_dev, stat.st_ino)] = stat.st_blocks * 512
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(self.temp_dir + "/"):
                        stat = os.stat(f"/proc/{pid}/fd/{fd}")
                        inodes[(stat.st_dev, stat.st_ino)] = stat.st_blocks * 512
                except OSError:
                    continue
        return inodes

    def sample(self) -> None:
        pids = self._descendants()
        rss = 0
        for pid in pids:
            status = _status_kib(pid)
            rss += status.get("VmRSS", 0)
            self._hwm_kib[pid] = max(self._hwm_kib.get(pid, 0), status.get("VmHWM", 0))
        self.rss_peak_kib = max(self.rss_peak_kib, rss)
        self.processes_peak = max(self.processes_peak, len(pids))
        self.temp_peak_bytes = max(self.temp_peak_bytes, sum(self._temp_inodes(pids).values()))
        self.samples += 1

    def figures(self) -> dict[str, float]:
        hwm = [kib for kib in self._hwm_kib.values() if kib]
        return {"all_processes_rss_peak_mib": self.rss_peak_kib / 1024,
                "all_processes_hwm_sum_mib": sum(hwm) / 1024,
                "largest_process_hwm_mib": max(hwm, default=0) / 1024,
                "processes": len(hwm), "processes_at_once_max": self.processes_peak,
                "temp_disk_peak_mib": self.temp_peak_bytes / MIB, "peak_samples": self.samples}
