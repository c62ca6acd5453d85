"""Memory figures of the current process, from /proc (Linux), with a resource fallback."""

from __future__ import annotations

import contextlib
import resource


def _status(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB → MiB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set (MiB) of this process's own address space (VmHWM). ru_maxrss is not used when
    /proc is there: it also counts the parent's RSS at fork, which survives the exec of a child."""
    peak = _status("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    current = _status("VmRSS")
    return current if current is not None else peak_rss_mb()


def reset_peak() -> bool:
    """Sets the peak back to the current RSS (Linux ≥ 4.0), so the next peak belongs to what follows."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    return False
