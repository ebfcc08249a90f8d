"""Sampling profiles (py-spy, attached by pid) of the throughput run's orchestrator and workers, and a text
summary of where their CPU time went: `python -m bench --only throughput --profile DIR`.

Each process gets `DIR/<name>.txt` (py-spy's collapsed stacks: `frame;frame;... count`) and the summary
prints, per process, the share of samples in each library, the functions with the most samples on top of
the stack (self) and the `chief` functions with the most samples anywhere in the stack (total).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .common import spawn, stop

PACKAGES = ("chief", "langgraph", "sqlalchemy", "psycopg", "redis", "pydantic", "orjson", "asyncio", "concurrent")


def py_spy() -> str:
    """The py-spy executable (next to this interpreter, or on PATH)."""
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    return found


def attach(name: str, pid: int, out_dir: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """Start sampling process `pid` into `out_dir/<name>.txt` (stopped with `detach`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return spawn([py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--format", "raw",
                  "-o", str(out_dir / f"{name}.txt")], log=out_dir / f"{name}.py-spy.log")


def detach(profiler: subprocess.Popen[bytes]) -> None:
    """Stop sampling; py-spy writes its file on SIGINT (or when the process it watches exits)."""
    if profiler.poll() is None:
        profiler.send_signal(signal.SIGINT)
        try:
            profiler.wait(20)
        except subprocess.TimeoutExpired:
            pass
    stop(profiler)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/module.py:123)" (paths mostly already short)
    func, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith("/") and "/chief/" in path:  # our own modules, however py-spy spelt them
        path = "chief/" + path.rsplit("/chief/", 1)[1]
    return f"{func} ({path})"


def _package(frame: str) -> str:
    path = frame.rsplit(" (", 1)[-1]
    return path.split("/", 1)[0]


def summarize(path: Path, top: int = 12) -> str:
    """Where a process's samples went: the busiest functions on top of the stack (self), the share of samples
    inside each watched package (total), and the busiest `chief` functions (total, CLI frames left out)."""
    own: Counter[str] = Counter()
    chief: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for package in {_package(f) for f in frames} & set(PACKAGES):
            packages[package] += count
        for frame in set(frames):
            if "(chief/" in frame and "(chief/cli/" not in frame:
                chief[frame] += count
    if not samples:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {samples} samples (py-spy, non-idle threads)",
             "  in package (total): " + ", ".join(f"{p} {n / samples:.0%}" for p, n in packages.most_common())]
    lines += ["  self:"] + [f"    {n / samples:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["  chief functions (total):"] + [f"    {n / samples:6.1%}  {f}" for f, n in chief.most_common(top)]
    return "\n".join(lines)
