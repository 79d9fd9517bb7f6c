"""Run a command and print its wall time, CPU time and peak RSS as JSON: the launcher of every timed run.

    python benchmarks/measure.py COMMAND [ARG...]

The benchmark process itself can't start the commands it measures: Linux counts the high-water RSS
of the address space a process had before ``exec`` in its ``ru_maxrss``, and a ``fork``/``vfork`` child
starts out with its parent's. After a few in-process runs the benchmark holds hundreds of MB, which every
child would then report. This small process starts each command instead, so the inherited floor is its
own ~10 MB. The command's stdout is discarded, its stderr passes through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def measure(command: list[str]) -> dict[str, float | int]:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": process.returncode,
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1:])))
