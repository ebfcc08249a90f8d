"""`python -m bench [--quick] [--only SECTION[,SECTION]] [--json FILE]`: Chief's measurements against the
baselines of DESIGN.md's "Numbers to beat", each measured in the same run on this machine.

Sections: scale, bus, durable, throughput, chat. Every process started is stopped, every database created is
dropped and every Redis key prefix used is deleted, also when a section fails or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import table
from .common import ROOT, cleanup_all

SECTIONS = ("scale", "bus", "durable", "throughput", "chat")
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"


def _section(name: str) -> tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], None]]:
    """The section's run and report (imported lazily: `--only scale` needs neither Celery nor services)."""
    import importlib

    module = importlib.import_module(f"bench.{name}")
    return module.run, module.report


def _run_scale(quick: bool) -> dict[str, Any]:
    from . import scale

    return scale.run(repeat=3 if quick else 9)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repetitions (< 2 min)")
    parser.add_argument("--only", default=",".join(SECTIONS), metavar="SECTION[,SECTION]",
                        help=f"sections to run, of: {', '.join(SECTIONS)}")
    parser.add_argument("--profile", metavar="DIR", help="throughput section: sample the orchestrator and the "
                        "workers with py-spy into DIR and print where their time went")
    parser.add_argument("--json", dest="json_path", default=str(DEFAULT_JSON), metavar="FILE",
                        help="write the results here (default: %(default)s; '-' for none)")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if not args.sections:
        parser.error("--only names no section")
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, print each one's report and then the table; 0 when every section ran."""
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpu": _cpu_model(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
    }
    failed = False
    try:
        for name in SECTIONS:
            if name not in args.sections:
                continue
            t0 = time.perf_counter()
            print(f"-- {name} ...", flush=True)
            run, report = _section(name)
            try:
                if name == "scale":
                    results[name] = _run_scale(args.quick)
                elif name == "throughput" and args.profile:
                    results[name] = run(quick=args.quick, profile_dir=Path(args.profile).resolve())
                else:
                    results[name] = run(quick=args.quick)
            except Exception as exc:  # noqa: BLE001 - one section failing must not lose the others' numbers
                failed = True
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            else:
                report(results[name])
            results.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
            print(flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping and removing what the bench started", file=sys.stderr)
        cleanup_all()
        return 130
    finally:
        cleanup_all()
    results.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 1)
    print(table.render(table.rows(results)))
    print(f"\n{'quick' if args.quick else 'full'} run, {results['seconds']['total']:.0f} s, "
          f"{results['machine']['cores']} cores ({results['machine']['cpu']}), {results['date']}")
    if args.json_path != "-":
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
