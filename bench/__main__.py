"""`python -m bench [--quick] [--json FILE]`: Chief's measurements (see DESIGN.md, "Numbers to beat")."""

from __future__ import annotations

import argparse
import json
import platform
from datetime import UTC, datetime

from . import bus, durable, scale


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", dest="json_path", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
               "python": platform.python_version(), "scale": scale.run(repeat=3 if args.quick else 9)}
    print("workflow parse + validate + compile (JSON text, median ms)")
    print(f"{'steps':>6} {'parse+validate':>15} {'compile':>9} {'total':>9} {'per step':>10}")
    for row in results["scale"]:
        print(f"{row['steps']:>6} {row['parse_validate_ms']:>15.2f} {row['compile_ms']:>9.2f} "
              f"{row['total_ms']:>9.2f} {row['per_step_us']:>8.1f}µs")
    results["bus"] = bus.run(quick=args.quick)
    print()
    bus.report(results["bus"])
    results["durable"] = durable.run(quick=args.quick)
    print()
    durable.report(results["durable"])
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
