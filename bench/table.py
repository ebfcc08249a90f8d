"""The summary table: what / ours / baseline / ratio / target / met?, as Markdown (the terminal and README)."""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str, str, str, str]


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**NO**")


def _x(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def _bus(res: dict[str, Any]) -> list[Row]:
    rt = res["round_trip"]
    rows = []
    for q in ("p50", "p95", "p99"):
        ours, base = rt["bus"][f"{q}_ms"], rt["ping"][f"{q}_ms"]
        target, ok = ("<= 1 ms", ours <= 1.0) if q == "p50" else ("-", None)
        rows.append((f"bus round trip {q} (dispatch -> worker process -> reply)", f"{ours:.2f} ms",
                     f"{base:.2f} ms (redis-py PING)", _x(ours / base if base else None), target, _met(ok)))
    return rows


def _durable(res: dict[str, Any]) -> list[Row]:
    rows = []
    for c in res["chains"]:
        bare = f"{c['bare_ms']:.2f} ms (LangGraph + AsyncPostgresSaver)"
        rows.append((f"durable step p50, {c['steps']}-step chain, end to end (Redis, worker process)",
                     f"{c['chief_e2e_ms']:.2f} ms", bare, _x(c["ratio_e2e"]), "<= bare (x1.00)",
                     _met(c["ratio_e2e"] <= 1.0)))
        if "chief_inprocess_ms" in c:
            rows.append((f"durable step p50, {c['steps']}-step chain, in-process bus + worker (reference)",
                         f"{c['chief_inprocess_ms']:.2f} ms", bare, _x(c["ratio_inprocess"]), "-", "-"))
    rows.append(("checkpoint write", f"{res['checkpoint_write_ms']:.2f} ms", "-", "-", "< 3 ms",
                 _met(res["checkpoint_write_ms"] < 3)))
    rows.append(("checkpoint restore (fork at an id)", f"{res['restore_fork_ms']:.2f} ms", "-", "-", "< 20 ms",
                 _met(res["restore_fork_ms"] < 20)))
    return rows


def _throughput(res: dict[str, Any]) -> list[Row]:
    ours = res["chief"]
    rows = []
    by_count = {r["in_flight"]: r for r in ours["rows"]}
    for r in ours["rows"]:
        base = f"{r['celery_jobs_per_s']:.0f} jobs/s (Celery)" if "celery_jobs_per_s" in r else "-"
        target, ok = "-", None
        if r["in_flight"] == 20:
            target = ">= 1,000 and >= 2x Celery"
            ok = r["steps_per_s"] >= 1000 and (r.get("ratio") or 0) >= 2
        elif r["in_flight"] > 20 and 20 in by_count:
            target = ">= 0.8x the 20-in-flight rate (flat)"
            ok = r["steps_per_s"] >= 0.8 * by_count[20]["steps_per_s"]
        ok = ok if r["succeeded"] == r["executions"] else False
        plural = "s" if r["in_flight"] != 1 else ""
        rows.append((f"durable steps/s, {r['in_flight']} execution{plural} in flight (1 orchestrator, "
                     f"{ours['workers']} workers)", f"{r['steps_per_s']:.0f} steps/s", base, _x(r.get("ratio")),
                     target, _met(ok)))
    celery = res.get("celery")
    rows.append(("peak RSS, orchestrator process (throughput run)", f"{ours['peak_rss_mb']} MiB", "-", "-", "-",
                 "-"))
    workers = ", ".join(f"{m}" for m in ours["worker_peak_rss_mb"])
    base = f"{sum(m or 0 for m in celery['peak_rss_mb']):.0f} MiB (Celery, main + children)" if celery else "-"
    rows.append(("peak RSS, each worker process (throughput run)", f"{workers} MiB", base, "-", "-", "-"))
    return rows


def _scale(res: dict[str, Any]) -> list[Row]:
    targets = {10: ("< 2 ms", 2.0), 1000: ("< 200 ms", 200.0)}
    rows = []
    for r in res["rows"]:
        target, limit = targets.get(r["steps"], ("-", None))
        rows.append((f"parse + validate + compile, {r['steps']} steps", f"{r['total_ms']:.2f} ms", "-", "-",
                     target, _met(None if limit is None else r["total_ms"] < limit)))
    if res["flatness"] is not None:
        first, last = res["rows"][0], res["rows"][-1]
        rows.append((f"per-step compile cost, {last['steps']} vs {first['steps']} steps",
                     f"{last['per_step_us']:.0f} µs", f"{first['per_step_us']:.0f} µs", _x(res["flatness"]),
                     "<= x1.5 (flat)", _met(res["flatness"] <= 1.5)))
    return rows


def _chat(res: dict[str, Any]) -> list[Row]:
    return [("chat: step event -> socket.io message showing it, p50", f"{res['p50_ms']:.0f} ms", "-", "-",
             "< 200 ms", _met(res["p50_ms"] < 200)),
            ("chat: step event -> socket.io message showing it, p95", f"{res['p95_ms']:.0f} ms", "-", "-",
             "< 1 s", _met(res["p95_ms"] < 1000))]


BUILDERS = {"bus": _bus, "durable": _durable, "throughput": _throughput, "scale": _scale, "chat": _chat}


def rows(results: dict[str, Any]) -> list[Row]:
    """The table's rows for the sections in `results` (a failed section gets one row saying so)."""
    out: list[Row] = []
    for name, build in BUILDERS.items():
        section = results.get(name)
        if section is None:
            continue
        if "error" in section:
            out.append((f"{name}: FAILED", section["error"].splitlines()[0][:80], "-", "-", "-", "**NO**"))
            continue
        out.extend(build(section))
    return out


def render(table: list[Row]) -> str:
    """A Markdown table, columns padded so it also reads well on a terminal."""
    header: Row = ("what", "ours", "baseline (same run)", "ratio", "target", "met?")
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in [header, *table]]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)
