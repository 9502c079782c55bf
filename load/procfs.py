"""Per-process CPU time and peak RSS from /proc (Linux).

Peak RSS is the kernel's VmHWM (high-water mark of the process's current address space), not
`ru_maxrss`: Linux carries the pre-exec address space's high-water mark into `ru_maxrss` at exec,
and a child spawned by the benchmark starts from a (v)fork of the benchmark's own, much bigger
process, so its `ru_maxrss` reports the parent's size rather than its own.
"""

from __future__ import annotations

import os

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads included (10 ms ticks), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def peak_rss_kb(pid: int | None = None) -> int:
    """VmHWM of a process (this one by default), in KiB; 0 if it cannot be read."""
    try:
        with open(f"/proc/{'self' if pid is None else pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def per(amount: float, seconds: float) -> float:
    """amount / seconds, 0 when nothing was measured."""
    return amount / seconds if seconds > 0 else 0.0
