"""Running the CLI in a child of its own, with its wall time, CPU time and peak RSS measured.

The peak is the child's own: a measuring process starts it and reads RUSAGE_CHILDREN, so a
large child run earlier by the same pytest process cannot leak into the figure (RUSAGE_CHILDREN
of pytest itself is the largest child it ever had).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers import SSB, ssb_env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall time
    cpu: float  # user + system seconds: what the run cost, whatever the load of the machine
    peak_mb: float


MEASURE = """
import json, os, resource, subprocess, sys, time
limit = 3 << 30  # a bomb that got through must not take the machine down with it
# RLIMIT_AS counts address space: without this, glibc's 64 MiB malloc arena per thread (16 manifest
# readers) can reach the limit under load with little real memory in use.
os.environ["MALLOC_ARENA_MAX"] = "2"
timeout = float(sys.argv[1])
start = time.monotonic()
proc = subprocess.run(sys.argv[2:], capture_output=True, timeout=timeout,
                      preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
seconds = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "out": proc.stdout.decode(errors="replace"),
                  "err": proc.stderr.decode(errors="replace"), "seconds": seconds,
                  "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}))
"""


def measured(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 120) -> Run:
    """`python -m ssb_s3 ARGS` in a child of its own, with its wall time and peak RSS."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(timeout), *SSB, *args],
                         capture_output=True, text=True, env=ssb_env(env), cwd=cwd,
                         timeout=timeout + 60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    return Run(r["rc"], r["out"], r["err"], r["seconds"], r["cpu"], r["peak_mb"])
