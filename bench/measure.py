"""Measurement helpers shared by bench/run.py and bench/bench_api.py (a library: nothing to run on its own).

    from measure import run, machine, versions      # with bench/ on sys.path, as the bench scripts have it
    r = run([sys.executable, "-c", "pass"], cwd=ROOT)   # {"wall", "cpu", "peak_mb", "others_cpu", "stdout", ...}

Process figures come from psutil, except where it has none: CPU time is the kernel's rusage of the reaped child
(os.wait4: exact, where psutil's per-process times come in 10 ms clock ticks, too coarse for a 15 ms process),
and a process's own high-water mark (VmHWM) is read from /proc/<pid>/status, which psutil does not expose.
"""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MB = 1024 * 1024
SAMPLE_SECONDS = 0.002  # RSS sampling period: a 15 ms process still gets several samples
TIMEOUT = 1800.0        # a measured command taking longer than this is killed and the case fails


class BenchError(Exception):
    """A command the benchmark ran failed; the message says which and how."""


def child_env(**extra: str) -> dict[str, str]:
    """Environment for every process the benchmarks start."""
    # No API token, config or proxies leak in; pip is pointed at a closed loopback port so nothing leaves the
    # machine; PYTHONDONTWRITEBYTECODE (set in some shells) is dropped because it makes every start recompile.
    drop = ("RISK_API_TOKEN", "RISK_CONFIG", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.lower().endswith("_proxy")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple/", PIP_NO_INPUT="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1", **extra)
    return env


def busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, summed over its CPUs."""
    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), total


def busy_cores(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Cores the whole machine kept busy on average between two busy_seconds() readings."""
    return (psutil.cpu_count() or 1) * (after[0] - before[0]) / max(after[1] - before[1], 1e-9)


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident memory (VmHWM) in MB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(cmd: list[Any], cwd: Path, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Run one command as a fresh process: wall time, CPU, peak RSS, its output and other processes' CPU."""
    argv = [str(c) for c in cmd]
    # What preparing the workspace wrote (a copied store: hundreds of MB) is written back first, so the command's
    # own fsyncs do not pay for it: an incremental ingest's fsync of finaldata.csv flushed the whole copied file.
    os.sync()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy0 = busy_seconds()
        t0 = time.perf_counter()
        proc = psutil.Popen(argv, cwd=cwd, env=child_env(), stdout=out, stderr=err, start_new_session=True)
        peak, done = [0], threading.Event()

        def sample() -> None:
            """Track the child's RSS until it ends; kill its process group past the timeout."""
            # Sampled rather than taken from wait4's ru_maxrss: a child forked from this (large) runner starts
            # out with the runner's pages, and ru_maxrss keeps that figure across exec.
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], proc.memory_info().rss)
                except psutil.Error:
                    return
                if time.perf_counter() - t0 > timeout:
                    os.killpg(proc.pid, signal.SIGKILL)
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so the rusage is the child's and its children's
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        busy1 = busy_seconds()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    if code != 0:
        shown = " ".join(Path(a).name if a.startswith("/") else a for a in argv[1:])
        tail = " | ".join((stderr.strip() or stdout.strip()).splitlines()[-4:])
        raise BenchError(f"`{shown}` exited with {code} after {wall:.1f} s: {tail[:600]}")
    return {"wall": wall, "cpu": cpu, "peak_mb": peak[0] / MB, "stdout": stdout, "stderr": stderr,
            "others_cpu": max(0.0, busy1[0] - busy0[0] - cpu)}


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and kernel of this machine."""
    model = platform.processor() or platform.machine()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        pass
    return {"cpu": model, "cores": psutil.cpu_count(), "usable_cores": len(psutil.Process().cpu_affinity()),
            "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1), "kernel": platform.release()}


def versions(libraries: tuple[str, ...]) -> dict[str, str]:
    """Python's version and each installed library's."""
    out = {"python": platform.python_version()}
    for name in libraries:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell, '-' for none."""
    return "-" if value is None else f"{value:,.{digits}f}"


def line_at(text: str, line: str, start: int = 0) -> int:
    """Where a line that is exactly `line` begins in text (at or after start), or -1."""
    # Whole lines only: a mark quoted inside a sentence is not a mark.
    at = start
    while (at := text.find(line, at)) != -1:
        if (at == 0 or text[at - 1] == "\n") and text[at + len(line):at + len(line) + 1] in ("", "\n"):
            return at
        at += len(line)
    return -1


def write_doc(path: Path, section: str, marks: tuple[str, str], before: str | None = None) -> None:
    """Put section (holding its own marks) between the marks in path; else before the line `before`, else last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Benchmarks\n\nFigures measured on real runs; each section names the command that "
                        "produced it.\n\n" + section, encoding="utf-8")
        return
    text = path.read_text(encoding="utf-8")
    start = line_at(text, marks[0])
    end = line_at(text, marks[1], start) if start != -1 else -1
    if end != -1:
        text = text[:start] + section.rstrip("\n") + text[end + len(marks[1]):]
    elif before and line_at(text, before) != -1:
        at = line_at(text, before)
        text = text[:at] + section.rstrip("\n") + "\n\n" + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # readers never see a half-written doc
