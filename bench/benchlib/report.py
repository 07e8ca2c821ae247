"""Summaries of the samples: the printed table, the Markdown table for
docs/performance.md, the JSON and CSV files and the gnuplot plots."""
import csv
import json
import os
import shutil
import statistics
import subprocess

from .runner import BUSY_CLIENT

FIELDS = ("rps", "p50", "p99", "errors", "requests", "bytes_per_s",
          "client_busy", "server_cpu_us_per_req", "stalled")


def _stat(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(results):
    """Rows with per-stack medians and the appstack / best peer ratios."""
    rows = []
    for (group, workers, case, conc), row in results.rows.items():
        out = {"group": group, "workers": workers, "case": case, "conc": conc,
               "title": row["title"], "stacks": []}
        for key, e in row["stacks"].items():
            s = {"key": key, "label": e["label"], "appstack": e["appstack"],
                 "n": len(e["samples"]), "failures": e["failures"]}
            for f in FIELDS:
                s[f] = _stat([smp.get(f) for smp in e["samples"]])
            for f in ("errors", "non2xx", "err_connect", "err_read", "err_write", "err_timeout",
                      "stalled"):
                s[f + "_total"] = sum(smp.get(f, 0) for smp in e["samples"])
            out["stacks"].append(s)
        _ratios(out)
        rows.append(out)
    return rows


def _med(s, f):
    return s[f]["median"] if s.get(f) else None


def _ratios(row):
    peers = [s for s in row["stacks"] if not s["appstack"] and _med(s, "rps")]
    best_rps = max((_med(s, "rps") for s in peers), default=None)
    best_p99 = min((_med(s, "p99") for s in peers if _med(s, "p99")), default=None)
    row["best_peer"] = max(peers, key=lambda s: _med(s, "rps"))["label"] if peers else None
    for s in row["stacks"]:
        s["ratio_rps"] = s["ratio_p99"] = None
        if s["appstack"] and _med(s, "rps") and best_rps:
            s["ratio_rps"] = _med(s, "rps") / best_rps
        if s["appstack"] and _med(s, "p99") and best_p99:
            s["ratio_p99"] = _med(s, "p99") / best_p99


def summarize_lifecycle(results):
    keys = ("cold_start_s", "respawn_s", "rss_master_kib", "rss_worker_kib",
            "rss_proxy_kib", "pss_total_kib")
    out = []
    for key, e in results.lifecycle.items():
        s = {"key": key, "label": e["label"], "appstack": e["appstack"],
             "n": len(e["samples"]), "failures": e["failures"]}
        for k in keys:
            s[k] = _stat([smp.get(k) for smp in e["samples"]])
        out.append(s)
    return out


def summarize_memory(results):
    out = []
    for key, e in results.memory.items():
        out.append({"key": key, "label": e["label"], "appstack": e["appstack"], "n": len(e["samples"]),
                     "failures": e["failures"],
                     "pss_total_kib": _stat([smp["pss_total_kib"] for smp in e["samples"]]),
                     "processes": _stat([smp["processes"] for smp in e["samples"]])})
    return out


# ---- text and Markdown tables --------------------------------------------

def _fmt_rps(s):
    r = s["rps"]
    if not r:
        return "FAILED" if s["failures"] else "-"
    mark = "*" if s["client_busy"] and s["client_busy"]["median"] > BUSY_CLIENT else ""
    return f"{r['median']:.0f}{mark} ({r['min']:.0f}-{r['max']:.0f})"


def _fmt_ms(st):
    return f"{st['median'] * 1000:.2f}" if st else "-"


def _fmt_ratio(x):
    return f"{x:.2f}x" if x else ""


def _fmt_errors(s):
    """Total, with its kinds when there are any: a read error is not the same
    failure as a 5xx or a refused connection."""
    if not s["n"]:
        return "-"
    stalled = f", no response at all in {s['stalled_total']} rep(s)" if s["stalled_total"] else ""
    if not s["errors_total"]:
        return "0" + stalled
    kinds = [(f"{s[k + '_total']} {name}") for k, name in (
        ("non2xx", "non-2xx"), ("err_connect", "connect"), ("err_read", "read"),
        ("err_write", "write"), ("err_timeout", "timeout")) if s[k + "_total"]]
    return f"{s['errors_total']} ({', '.join(kinds)}){stalled}"


def _fmt_cpu(s):
    c = s["server_cpu_us_per_req"]
    return f"{c['median']:.0f}" if c else "-"


def row_name(row):
    """"hello world via the front, 4 workers", "static files from the front: 1 KiB", ..."""
    name = row["title"] if row["case"] == "hello" else f"{row['title']}: {row['case']}"
    return name if row["group"] in ("static", "tls-static") else f"{name}, {row['workers']} workers"


HEAD = ("case", "conc", "stack", "req/s median (min-max)", "p50 ms", "p99 ms",
        "errors (all reps)", "server CPU us/req", "appstack/best peer req/s", "appstack/best peer p99")


def table_rows(rows):
    out = []
    for row in rows:
        first = True
        case = row_name(row)
        for s in row["stacks"]:
            out.append((case if first else "", str(row["conc"]) if first else "", s["label"],
                        _fmt_rps(s), _fmt_ms(s["p50"]), _fmt_ms(s["p99"]),
                        _fmt_errors(s), _fmt_cpu(s),
                        _fmt_ratio(s["ratio_rps"]), _fmt_ratio(s["ratio_p99"])))
            first = False
    return out


LIFE_HEAD = ("stack (Django, 1 worker)", "cold start to first 200 s", "respawn after kill -9 s",
             "RSS master MiB", "RSS worker MiB", "RSS front MiB", "PSS all MiB")
_LIFE_KEYS = (("cold_start_s", 1, "{:.2f}"), ("respawn_s", 1, "{:.3f}"),
              ("rss_master_kib", 1024, "{:.1f}"), ("rss_worker_kib", 1024, "{:.1f}"),
              ("rss_proxy_kib", 1024, "{:.1f}"), ("pss_total_kib", 1024, "{:.1f}"))


def life_rows(life):
    out = []
    for s in life:
        cells = [s["label"]]
        for k, div, fmt in _LIFE_KEYS:
            st = s[k]
            if not st:
                cells.append("FAILED" if s["failures"] else "-")
            elif st["min"] == st["max"]:
                cells.append(fmt.format(st["median"] / div))
            else:
                cells.append(f"{fmt.format(st['median'] / div)} "
                             f"({fmt.format(st['min'] / div)}-{fmt.format(st['max'] / div)})")
        out.append(tuple(cells))
    ratio = ["appstack / best peer"]
    mine = [s for s in life if s["appstack"]]
    peers = [s for s in life if not s["appstack"]]
    for k, _, _ in _LIFE_KEYS:
        best = min((p[k]["median"] for p in peers if p[k] and p[k]["median"]), default=None)
        a = mine[0][k]["median"] if mine and mine[0][k] else None
        ratio.append(f"{a / best:.2f}x" if a is not None and best else "")
    if any(ratio[1:]):
        out.append(tuple(ratio))
    return out


# The peers a pool's memory is compared with (stacks.MEMORY).
MEMORY_PEERS = (("gunicorn", "gunicorn sync"), ("uwsgi", "uWSGI"))


def memory_head(workers):
    return ((f"stack (Django, {workers} workers, after 1 s of load)", "PSS total MiB", "processes")
            + tuple(f"/ {label}" for _, label in MEMORY_PEERS))


def memory_rows(mem):
    by_key = {s["key"]: s for s in mem}
    out = []
    for s in mem:
        st = s["pss_total_kib"]
        if not st:
            out.append((s["label"], "FAILED" if s["failures"] else "-", "-") + ("",) * len(MEMORY_PEERS))
            continue
        cells = [s["label"], f"{st['median'] / 1024:.1f} ({st['min'] / 1024:.1f}-{st['max'] / 1024:.1f})",
                 f"{s['processes']['median']:.0f}"]
        for key, _ in MEMORY_PEERS:
            peer = by_key.get(key, {}).get("pss_total_kib")
            cells.append(f"{st['median'] / peer['median']:.2f}x" if s["appstack"] and peer else "")
        out.append(tuple(cells))
    return out


def text_table(head, rows):
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep] + [line(r) for r in rows])


def md_table(head, rows):
    esc = lambda c: c.replace("|", "\\|")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def failures(rows, life, skipped, mem=()):
    out = [f"{k}: skipped, {why}" for k, why in sorted(skipped.items())]
    for row in rows:
        for s in row["stacks"]:
            if s["failures"] and not s["n"]:
                out.append(f"{row_name(row)}, c={row['conc']}, {s['label']}: "
                           f"{s['failures'][0].splitlines()[0]}")
            if s.get("stalled_total"):
                out.append(f"{row_name(row)}, c={row['conc']}, {s['label']}: no response "
                           f"at all during the case in {s['stalled_total']} repetition(s)")
    for s in life:
        if s["failures"]:
            out.append(f"lifecycle / {s['label']}: {s['failures'][0].splitlines()[0]}")
    for s in mem:
        if s["failures"]:
            out.append(f"memory / {s['label']}: {s['failures'][0].splitlines()[0]}")
    return sorted(set(out))


# ---- files -----------------------------------------------------------------

def write_json(path, meta, rows, life, results, mem=()):
    raw = [{"group": g, "workers": w, "case": c, "conc": n, "stack": k, "samples": e["samples"],
            "failures": e["failures"]}
           for (g, w, c, n), row in results.rows.items() for k, e in row["stacks"].items()]
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows, "lifecycle": life, "raw": raw,
                   "lifecycle_raw": results.lifecycle, "memory": list(mem),
                   "memory_raw": results.memory, "skipped": results.skipped}, f, indent=1)


def write_csv(path, results):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("group", "workers", "case", "conc", "stack", "rep") + FIELDS)
        for (g, wk, c, n), row in results.rows.items():
            for k, e in row["stacks"].items():
                for s in e["samples"]:
                    w.writerow((g, wk, c, n, k, s["rep"]) + tuple(s.get(x) for x in FIELDS))


# ---- plots -------------------------------------------------------------------

def _sweeps(rows):
    """{row name: {(stack label, key): [(conc, stat rps, stat p99)]}} for
    the rows measured at more than one concurrency."""
    by = {}
    for row in rows:
        k = row_name(row)
        for s in row["stacks"]:
            if s["rps"]:
                by.setdefault(k, {}).setdefault((s["label"], s["key"]), []).append(
                    (row["conc"], s["rps"], s["p99"]))
    return {k: v for k, v in by.items() if any(len(pts) > 1 for pts in v.values())}


def plot(rows, outdir):
    """Writes throughput.png and p99.png into OUTDIR; returns their paths."""
    if not shutil.which("gnuplot"):
        return []
    sweeps = _sweeps(rows)
    if not sweeps:
        return []
    panels = []
    for i, (name, series) in enumerate(sorted(sweeps.items())):
        files = []
        for j, ((label, key), pts) in enumerate(sorted(series.items())):
            dat = os.path.join(outdir, f"sweep{i}-{j}.dat")
            with open(dat, "w") as f:
                for conc, rps, p99 in sorted(pts, key=lambda p: p[0]):
                    p = p99 or {"median": 0, "min": 0, "max": 0}
                    f.write(f"{conc} {rps['median']} {rps['min']} {rps['max']} "
                            f"{p['median'] * 1e3} {p['min'] * 1e3} {p['max'] * 1e3}\n")
            files.append((dat, label, key))
        panels.append((name, files))
    out = []
    for fname, cols, ylabel in (("throughput.png", "1:2:3:4", "requests/s"),
                                ("p99.png", "1:5:6:7", "p99 latency, ms")):
        path = os.path.join(outdir, fname)
        try:
            _gnuplot(path, panels, cols, ylabel)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"bench: no plot {fname}: {e}")   # the tables matter more
            continue
        out.append(path)
    return out


# The same stack keeps its colour in every panel; appstack stands out.
_COLOURS = (("appstack", "#d62728", 3), ("gunicorn", "#1f77b4", 2), ("uwsgi", "#2ca02c", 2),
            ("nginx", "#9467bd", 2))


def _style(key):
    for prefix, colour, width in _COLOURS:
        if prefix in key:
            return f"lc rgb '{colour}' lw {width}"
    return "lw 2"


def _gnuplot(path, panels, cols, ylabel):
    width = 480 * len(panels)
    script = [f"set terminal pngcairo size {width},380 font 'sans,9'",
              f"set output '{path}'",
              f"set multiplot layout 1,{len(panels)}",
              "set logscale x 2", "set xlabel 'concurrent connections'",
              f"set ylabel '{ylabel}'", "set key top left", "set grid",
              "set yrange [0:*]", "set offsets graph 0.05, graph 0.05, 0, 0"]
    if "p99" in ylabel:
        script.append("set logscale y 10; set yrange [*:*]")
    for name, files in panels:
        script.append(f"set title '{name}'")
        script.append("plot " + ", ".join(
            f"'{dat}' using {cols} with yerrorlines {_style(key)} title '{label}'"
            for dat, label, key in files))
    script.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
