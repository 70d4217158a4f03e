"""What the kernel says about a process tree and the CPUs: CPU seconds, peak RSS, busy time.

CPU time of a server is ``utime + stime`` from ``/proc/<pid>/stat`` summed over the process
and its descendants (a future ``GATEWAY_WORKERS=N`` forks workers; nginx has a master and a
worker), so a delta across a load run divided by the calls served is the CPU it spent per
call. Peak RSS is ``VmHWM`` of ``/proc/<pid>/status`` summed the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after the last ')'
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    total = 0
    for each in descendants(pid):
        fields = _stat_fields(each)
        if fields is not None:
            # fields[0] is the state (field 3); utime and stime are fields 14 and 15
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def peak_rss_bytes(pid: int) -> int:
    """Sum of VmHWM (the resident set's high-water mark) over the process tree."""
    total = 0
    for each in descendants(pid):
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class CpuTimes:
    busy: dict[int, float]
    total: dict[int, float]


def cpu_times() -> CpuTimes:
    """Per-CPU busy and total jiffies from /proc/stat."""
    busy: dict[int, float] = {}
    total: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        numbers = [int(v) for v in values]
        idle = numbers[3] + numbers[4]  # idle + iowait
        cpu = int(name[3:])
        total[cpu] = float(sum(numbers[:8]))
        busy[cpu] = total[cpu] - idle
    return CpuTimes(busy, total)


def busy_percent(before: CpuTimes, after: CpuTimes) -> dict[int, float]:
    """Share of each CPU's time that was busy between two readings, in percent."""
    out: dict[int, float] = {}
    for cpu in after.total:
        span = after.total[cpu] - before.total.get(cpu, 0.0)
        out[cpu] = 100.0 * (after.busy[cpu] - before.busy.get(cpu, 0.0)) / span if span else 0.0
    return out
