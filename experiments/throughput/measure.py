"""Run one command as a whole process and measure it: wall time, peak RSS, exit status.

Wall time is ``perf_counter`` from just before the process is spawned to the moment the kernel
reports it dead (a blocking ``wait4``, so no polling delay is added). Peak RSS is the kernel's
high-water mark from ``wait4``'s rusage (the process and any children it waited for); a psutil
poll of the whole process tree every 0.2 s is kept as a cross-check (it catches children that
are never waited for, e.g. dataloader workers).
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class Measured:
    wall_s: float
    peak_rss_mib: float  # kernel high-water mark (ru_maxrss)
    tree_peak_mib: float  # sampled sum over the process tree
    returncode: int
    timed_out: bool
    cpu_s: float = 0.0  # user + system CPU seconds of the process and its waited-for children (wait4)


def tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants right now (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(cmd: list[str], log: Path, cwd: Path, env: dict, timeout_s: float) -> Measured:
    """Run ``cmd`` with stdout+stderr to ``log``; the process group is killed after ``timeout_s``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = [0]
    done = threading.Event()
    timed_out = threading.Event()
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )

        def poll() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], tree_rss(proc.pid))

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only this job's processes
            except ProcessLookupError:
                pass

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        except BaseException:  # Ctrl-C / SIGTERM of the harness: never leave the job running
            kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
            done.set()
            poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return Measured(
        wall_s=wall,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        tree_peak_mib=peak[0] / 2**20,
        returncode=proc.returncode,
        timed_out=timed_out.is_set(),
        cpu_s=usage.ru_utime + usage.ru_stime,
    )


def machine() -> dict:
    """What the numbers depend on: CPU, cores, memory, library versions, load at this moment."""
    import lightning
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
