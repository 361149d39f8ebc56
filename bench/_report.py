"""The bench's output: text tables, the JSON file and the chart.

Ratios read "this way / logfunnel" in every table: a rate ratio below 1.00
means the way is slower than logfunnel, a CPU ratio above 1.00 means it costs
more CPU per record.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

__all__ = ["describe_machine", "format_report", "print_report", "write_json", "write_plot"]

_PEERS = ("loguru", "concurrent-log-handler", "multiprocessing-logging")


def describe_machine() -> dict[str, Any]:
    """Enough about the machine to tell whether two result files are comparable."""
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor()
    versions: dict[str, str | None] = {}
    for name in ("logfunnel", *_PEERS):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": versions,
    }


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for cells in [header, *rows]:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        lines.append("  ".join([first, *rest]).rstrip())
    return lines


def _compare_lines(method: str, rows: list[dict[str, Any]], params: dict[str, Any]) -> list[str]:
    header = [
        "way",
        "records/s",
        "CPU us/rec",
        "caller us/call",
        "writer us/rec",
        "lost",
        "dup",
        "reord",
        "writer MiB",
        "rate/lf",
        "CPU/lf",
    ]
    body = []
    for row in rows:
        audited = row["audited"]
        body.append(
            [
                row["way"],
                _num(row["records_per_s"]) if audited else "-",
                _num(row["cpu_us"], 1),
                _num(row["caller_us"], 1),
                _num(row["writer_us"], 1) if row["writer"] else "-",
                _num(row.get("lost")) if audited else "-",
                _num(row.get("duplicated")) if audited else "-",
                _num(row.get("reordered")) if audited else "-",
                _num(row["writer_rss_mib"], 1),
                _ratio(row.get("rate_vs_logfunnel")) if audited else "-",
                _ratio(row.get("cpu_vs_logfunnel")),
            ]
        )
    title = (
        f"{method}: {params['processes']} processes x {params['records']:,} records of "
        f"{params['size']} bytes, median of {params['repeat']} run(s)"
    )
    return [title, *_table(header, body)]


def _pairs(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, dict[str, Any]]]:
    grouped: dict[Any, dict[str, dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row[key], {})[row["way"]] = row
    return grouped


def _scale_lines(method: str, rows: list[dict[str, Any]], params: dict[str, Any]) -> list[str]:
    header = ["processes", "logfunnel rec/s", "per-process rec/s", "lf/per-process", "lf vs first"]
    header.append("writer MiB")
    body = []
    first: float | None = None
    for processes, ways in sorted(_pairs(rows, "processes").items()):
        lf = ways.get("logfunnel")
        pp = ways.get("per-process-files")
        lf_rate = lf["records_per_s"] if lf else None
        pp_rate = pp["records_per_s"] if pp else None
        if first is None:
            first = lf_rate
        body.append(
            [
                str(processes),
                _num(lf_rate),
                _num(pp_rate),
                _ratio(lf_rate / pp_rate if lf_rate and pp_rate else None),
                _ratio(lf_rate / first if lf_rate and first else None),
                _num(lf["writer_rss_mib"], 1) if lf else "-",
            ]
        )
    title = f"{method}, scale: {params['records']:,} records per process, records/s (median)"
    return [title, *_table(header, body)]


def _sizes_lines(method: str, rows: list[dict[str, Any]]) -> list[str]:
    header = [
        "message bytes",
        "records/process",
        "logfunnel MB/s",
        "per-process MB/s",
        "plain write MB/s",
        "lf/plain",
        "lost",
        "writer MiB",
    ]
    body = []
    for size, ways in sorted(_pairs(rows, "size").items()):
        lf = ways.get("logfunnel")
        pp = ways.get("per-process-files")
        plain = ways.get("plain-write")
        lf_mb = lf["mb_per_s"] if lf else None
        plain_mb = plain["mb_per_s"] if plain else None
        any_row = lf or pp or plain
        body.append(
            [
                f"{size:,}",
                f"{any_row['records']:,}" if any_row else "-",
                _num(lf_mb, 1),
                _num(pp["mb_per_s"] if pp else None, 1),
                _num(plain_mb, 1),
                _ratio(lf_mb / plain_mb if lf_mb and plain_mb else None),
                _num(lf.get("lost")) if lf else "-",
                _num(lf["writer_rss_mib"], 1) if lf else "-",
            ]
        )
    title = f"{method}, message sizes: MB/s of log file written (median)"
    return [title, *_table(header, body)]


def _latency_lines(method: str, rows: list[dict[str, Any]]) -> list[str]:
    header = ["way", "records/s", "p50 ms", "p99 ms", "max ms", "within 10 ms", "lost"]
    body = []
    for row in rows:
        latency = row.get("latency_ms") or {}
        body.append(
            [
                row["way"],
                _num(row["records_per_s"]),
                _num(latency.get("p50"), 2),
                _num(latency.get("p99"), 2),
                _num(latency.get("max"), 1),
                f"{latency['within_10ms']:.2%}" if latency else "-",
                _num(row.get("lost")),
            ]
        )
    title = f"{method}, latency: logging call to record written, at a steady rate (median)"
    return [title, *_table(header, body)]


def format_report(results: dict[str, Any]) -> str:
    """Every section of ``results`` as text tables, then the notes."""
    params = results["params"]
    machine = results["machine"]
    lines = [
        f"command: {results['command']}",
        f"machine: {machine['cpus']} CPUs, {machine['cpu_model'] or 'unknown CPU'}, "
        f"{machine['platform']}, Python {machine['python']}",
    ]
    sections: list[tuple[str, Callable[[str, list[dict[str, Any]]], list[str]]]] = [
        ("compare", lambda m, rows: _compare_lines(m, rows, params)),
        ("scale", lambda m, rows: _scale_lines(m, rows, params)),
        ("sizes", _sizes_lines),
        ("latency", _latency_lines),
    ]
    for key, render in sections:
        for method, rows in results[key].items():
            if rows:
                lines += ["", *render(method, rows)]
    if results.get("startup"):
        from ._startup import startup_lines

        lines += ["", *startup_lines(results["startup"])]
    if results.get("dask"):
        from ._dask import dask_lines

        lines += ["", *dask_lines(results["dask"])]
    notes = [f"{s['way']} ({s['method']}): skipped, {s['reason']}" for s in results["skipped"]]
    notes += [f"{f['way']} ({f['method']}): failed, {f['error']}" for f in results["failed"]]
    if notes:
        lines += ["", *(f"note: {note}" for note in notes)]
    if results["compare"]:
        lines += [
            "",
            "rate/lf and CPU/lf: this way / logfunnel in the same table"
            " (rate < 1: slower than logfunnel; CPU > 1: costs more)",
        ]
    return "\n".join(lines) + "\n"


def print_report(results: dict[str, Any], out: TextIO = sys.stdout) -> None:
    out.write(format_report(results))
    out.flush()


def write_json(results: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
        handle.write("\n")


def write_plot(results: dict[str, Any], path: str) -> None:
    """Throughput by way (one bar per start method) and, if measured, by process count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    thousands = FuncFormatter(lambda value, _: f"{value:,.0f}")

    compare = {m: [r for r in rows if r["audited"]] for m, rows in results["compare"].items()}
    scale = {m: rows for m, rows in results["scale"].items() if rows}
    panels = int(bool(any(compare.values()))) + int(bool(scale))
    if panels == 0:
        return
    figure, axes = plt.subplots(1, panels, figsize=(7 * panels, 5), squeeze=False)
    column = 0
    if any(compare.values()):
        axis = axes[0][column]
        column += 1
        methods = list(compare)
        ways: list[str] = []
        for rows in compare.values():
            ways += [r["way"] for r in rows if r["way"] not in ways]
        height = 0.8 / max(1, len(methods))
        for offset, method in enumerate(methods):
            rates = {r["way"]: r["records_per_s"] for r in compare[method]}
            positions = [i + offset * height for i in range(len(ways))]
            axis.barh(positions, [rates.get(w, 0) for w in ways], height=height, label=method)
        axis.set_yticks([i + height * (len(methods) - 1) / 2 for i in range(len(ways))])
        axis.set_yticklabels(ways)
        axis.invert_yaxis()
        axis.set_xlabel("records/s, all processes together")
        axis.xaxis.set_major_formatter(thousands)
        params = results["params"]
        axis.set_title(
            f"{params['processes']} processes x {params['records']:,} records"
            f" of {params['size']} B into one log"
        )
        axis.legend(title="start method")
        axis.grid(axis="x", alpha=0.3)
    if scale:
        axis = axes[0][column]
        counts: set[int] = set()
        for color, (method, rows) in enumerate(scale.items()):
            for way, style in (("logfunnel", "-o"), ("per-process-files", "--s")):
                points = sorted(
                    (r["processes"], r["records_per_s"]) for r in rows if r["way"] == way
                )
                if points:
                    xs, ys = zip(*points, strict=True)
                    counts.update(xs)
                    axis.plot(xs, ys, style, color=f"C{color}", label=f"{way} ({method})")
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(counts))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.yaxis.set_major_formatter(thousands)
        axis.set_xlabel("producer processes")
        axis.set_ylabel("records/s, all processes together")
        axis.set_ylim(bottom=0)
        axis.set_title("scale")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
