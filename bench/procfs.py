"""CPU time and memory of a process tree, read from Linux's /proc (no psutil needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of every thread of ``pid`` so far (not of its children)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # stat(5): utime and stime are fields 14 and 15; fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot): with the pid, names one process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        ppid = parent_pid(int(entry.name))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    if _stat_fields(root) is None:
        return []
    found = [root]
    for pid in found:  # grows while iterating: a breadth-first walk
        found.extend(children.get(pid, []))
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set since start) and VmRSS of ``pid``, in KiB."""
    out: dict[str, int] = {}
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            out[name] = int(value.split()[0])
    return out


@dataclass(frozen=True, slots=True)
class TreeSample:
    cpu: dict[int, float]  # pid -> cpu seconds so far

    @classmethod
    def take(cls, root: int) -> TreeSample:
        cpu: dict[int, float] = {}
        for pid in process_tree(root):
            seconds = cpu_seconds(pid)
            if seconds is not None:
                cpu[pid] = seconds
        return cls(cpu)

    def cpu_since(self, earlier: TreeSample) -> float:
        """CPU seconds the tree used between ``earlier`` and this sample.

        A process that appeared in between counts from zero; one that exited
        in between is lost (its children's time is not in our reach either).
        """
        return sum(now - earlier.cpu.get(pid, 0.0) for pid, now in self.cpu.items())


def tree_memory(root: int) -> dict[int, dict[str, int]]:
    """VmHWM and VmRSS (KiB) of every process of the tree."""
    return {pid: memory_kib(pid) for pid in process_tree(root)}


def cpu_model() -> str:
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown"
