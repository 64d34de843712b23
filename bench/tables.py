"""The report's tables, one function per section, each returning Markdown lines."""

from __future__ import annotations

from typing import Any

from bench.figures import (
    DASH,
    DIALECTS,
    NAMES,
    best_per_run,
    describe,
    markdown_table,
    median,
    ratio,
    ratio_at,
    targets_of,
)
from bench.results import READ_KINDS
from bench.stats import spread

HTTP_TARGETS = ("labledger", "naive", "http_bound")
LAYERS = [(layer, q) for layer in ("http", "store", "sql") for q in (50, 99)]


def _dialects(results: dict[str, Any]) -> list[str]:
    return list(results["dialects"])


def tamper(results: dict[str, Any]) -> list[str]:
    """On vs off, verify and receipts, coverage delay: the section of issue 3's figures."""
    found = results.get("tamper")
    if found is None:
        return []
    c = {**results["config"], **found.get("config", {})}
    lines = ["## Tamper evidence (issue 3)", ""]
    if not found.get("measured_with_the_suite", True):
        m = found["machine"]
        lines += [
            f"Measured separately from the rest of this report (`python -m bench full --only "
            f"tamper`), on {m['date']} in {found['duration_s']:.0f} s, labledger from "
            f"`{m['labledger_source']}` (HEAD {m['git_head']}); load average "
            f"{m['load_average_at_start']} at the start, {m['load_average_at_end']} at the end. "
            "Every ratio below compares targets measured in that same run.",
            "",
        ]
    lines += [
        f"### Ingest with tamper evidence on and off ({c['tamper_level']} concurrent writers)",
        "",
        f"*on* is `labledger serve` as shipped (every row queued into `log_queue` in the ingest "
        "transaction; the integrator signs a checkpoint every second, in a process of its own "
        "on PostgreSQL and in a thread on SQLite, `LABLEDGER_INTEGRATOR=auto`; server CPU is that "
        "of all the server's processes). *off* is the "
        "same build with the log switched off (bench/unlogged.py: a SqlStore whose transactions "
        "skip `flush_log_queue`, no integrator), on the same uvicorn options. Closed loop, "
        f"{c['warmup_s']} s warm-up then {c['measure_s']} s measured; median of {c['runs']} runs "
        "(min-max), each on fresh servers and databases, on and off interleaved in alternating "
        "order. The ratio is taken run by run, then the median.",
        "",
    ]
    header = ["database", "on: deliveries/s", "off: deliveries/s", "on ÷ off", "on p99 (ms)",
              "off p99 (ms)", "on: server CPU (ms/req)", "off: server CPU (ms/req)"]  # fmt: skip
    rows = []
    for dialect, f in found["on_off"].items():
        on, off = f["on"], f["off"]
        rows.append([
            DIALECTS[dialect], describe(on["deliveries_per_s"]), describe(off["deliveries_per_s"]),
            describe(f["on_over_off"], 2), describe(on["p99_ms"]), describe(off["p99_ms"]),
            describe(on["server_cpu_ms_per_request"], 2),
            describe(off["server_cpu_ms_per_request"], 2),
        ])  # fmt: skip
    lines += markdown_table(header, rows)
    lines += _verify_section(found, c)
    lines += _coverage_section(found, c)
    return lines


def _verify_section(found: dict[str, Any], c: dict[str, Any]) -> list[str]:
    some = next(iter(found["verify"].values()))
    lines = [
        f"### `labledger verify` and receipts ({some['attempts']:,} bulk-loaded attempts, "
        f"{some['entries']:,} log entries)",
        "",
        "The bulk load of the read benchmark (bench/bulk.py: sessions, deliveries, pushes, "
        "attempts, audit events; each attempt with changed files of its own, each row with "
        "personal fields a salt of its own), every row queued into `log_queue` by one "
        "INSERT ... SELECT per table and integrated by labledger's `SqlLog.integrate` in "
        "batches of 100,000 (one signed checkpoint each). The ledger is then left as one "
        "grown over a term would be (PostgreSQL: `VACUUM (ANALYZE)`, which autovacuum would "
        "long since have run; SQLite: the WAL checkpointed) and the machine's dirty pages "
        "written out. Then `verify_database` (what `labledger verify` runs) is timed "
        "in-process, without and with re-hashing every raw delivery body, the two "
        f"alternating, {c.get('verify_rounds', 1)} times each (median, min-max); "
        "entries/s = log entries checked ÷ wall time; CPU per entry counts "
        "`verify` and its worker processes, not the database server. Receipts: "
        '`SqlLog.receipt("attempt", id)` for '
        f"{c['receipts']} random attempts, sequential.",
        "",
    ]
    if some["attempts"] < 1_000_000:
        lines += [
            f"**Smaller than the goal's 1,000,000 entries**: measured at {some['entries']:,} "
            "entries to fit the time available. `verify` does a fixed amount of work per entry "
            "(plus O(log n) to append a leaf), so entries/s carries over; the wall time at "
            "1,000,000 entries would be about 1,000,000 ÷ entries/s.",
            "",
        ]
    header = ["database", "log build (s)", "verify (entries/s)", "CPU (µs/entry)", "intact",
              "with bodies (entries/s)", "intact", "receipt p50 (ms)",
              "receipt p99 (ms)"]  # fmt: skip
    rows = []
    for dialect, v in found["verify"].items():
        plain, bodies, r = v["verify"], v["verify_with_bodies"], v["receipts"]
        cpu = plain.get("cpu_us_per_entry")  # absent from results before 0d09bab
        rows.append([
            DIALECTS[dialect], describe(v["log_s"], 1), describe(plain["entries_per_s"]),
            DASH if cpu is None else describe(cpu, 1), str(plain["intact"]),
            describe(bodies["entries_per_s"]), str(bodies["intact"]),
            describe(r["p50_ms"], 1), describe(r["p99_ms"], 1),
        ])  # fmt: skip
    return [*lines, *measured_apart(found["verify"], "verify"), *markdown_table(header, rows)]


def measured_apart(by_dialect: dict[str, Any], part: str) -> list[str]:
    """Where figures of `part` were measured apart from the rest of the report (`--only`):
    when, on which source and how loaded the machine was, for the databases so measured."""
    runs: dict[str, list[str]] = {}  # one `--only` run may have measured several databases
    for dialect, figures in by_dialect.items():
        measured = figures.get("measured")
        if measured is None:
            continue
        m = measured["machine"]
        when = (
            f"on {measured['started_at']} (HEAD {m['git_head']}, load average "
            f"{m['load_average_at_start']} at the start)"
        )
        runs.setdefault(when, []).append(DIALECTS[dialect])
    if not runs:
        return []
    said = "; ".join(f"{' and '.join(names)} {when}" for when, names in runs.items())
    return [
        f"Measured apart from the rest of this report (`python -m bench full --only {part}`): "
        f"{said}.",
        "",
    ]


def _coverage_section(found: dict[str, Any], c: dict[str, Any]) -> list[str]:
    header = ["database", "covered / sent", "p50 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)"]
    rows = [
        [DIALECTS[d], f"{v['covered']} / {v['samples']}",
         *(describe(v[k], 0) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))]
        for d, v in found["coverage"].items()
    ]  # fmt: skip
    some = next(iter(found["coverage"].values()))
    return [
        "### Checkpoint coverage delay",
        "",
        f"`labledger serve` with the default integrate interval "
        f"({some['integrate_interval_s']:g} s). {c['coverage_samples']} deliveries at "
        f"{c['coverage_rate']:g}/s; for each, from its 202 to the first 200 of "
        "`GET /api/v1/attempts/{id}/proof` for its first attempt (409 until a signed "
        f"checkpoint covers it), polled every {c['coverage_poll_s'] * 1000:.0f} ms (so up to "
        "that much late). The stated bound is about one interval after the commit, plus the "
        "integration's own time; *met* above means p99 ≤ 1.25 intervals.",
        *_first_covered(found["coverage"]),
        "",
        *markdown_table(header, rows),
    ]


def _first_covered(coverage: dict[str, Any]) -> list[str]:
    """The delay of a first delivery sent as the server came up, where it was measured (the
    measured ones follow it: the steady state, not the integrator's start)."""
    firsts = [
        (d, v["first_after_start_ms"]) for d, v in coverage.items() if "first_after_start_ms" in v
    ]
    if not firsts:
        return []
    said = ", ".join(f"{describe(ms, 0)} ms on {DIALECTS[d]}" for d, ms in firsts)
    return [
        "",
        "A first delivery, sent as soon as the server answered, is covered before the measured "
        "ones are sent, so that they show the steady state, not the integrator starting up "
        f"(on PostgreSQL a process of its own). That first one took {said}.",
    ]


def saturation(results: dict[str, Any]) -> list[str]:
    levels = [str(level) for level in results["config"]["levels"]]
    lines = ["## Throughput at saturation (deliveries/s)", ""]
    for dialect in _dialects(results):
        rows = []
        for target, figures in targets_of(results, dialect).items():
            sat = figures["saturation"]
            cells = [describe(sat[level]["deliveries_per_s"]) for level in levels]
            best = spread(best_per_run(sat))
            attempts = spread(best_per_run(sat, "attempts_per_s"))
            rows.append([NAMES[target], *cells, describe(best), describe(attempts)])
        header = ["target", *(f"c={level}" for level in levels), "best", "attempts/s at best"]
        lines += [f"### {DIALECTS[dialect]}", "", *markdown_table(header, rows)]
    return lines


def ratios(results: dict[str, Any]) -> list[str]:
    rows = [
        [f"labledger ÷ {NAMES[b]}"]
        + [describe(ratio(results, d, b), 2) for d in _dialects(results)]
        for b in ("naive", "http_bound", "db_bound")
    ]
    if results.get("interleaving") == "step":  # the two measured seconds apart, level by level
        rows += [
            [f"labledger ÷ {NAMES['naive']} at concurrency {level}"]
            + [describe(ratio_at(results, d, "naive", level), 2) for d in _dialects(results)]
            for level in map(str, results["config"]["levels"])
        ]
    header = ["best deliveries/s", *(DIALECTS[d] for d in _dialects(results))]
    return ["## Ratios (run by run, then median)", "", *markdown_table(header, rows)]


def _latency_cells(figures: dict[str, Any] | None) -> list[str]:
    if figures is None:
        return [DASH] * 3
    return [describe(figures[f"p{q}_ms"], 1) for q in (50, 95, 99)]


def latency(results: dict[str, Any]) -> list[str]:
    level = str(results["config"]["saturation_level"])
    rate = results["config"]["rate"]
    lines = [
        "## Latency (ms)",
        "",
        f"At an offered {rate:g} deliveries/s (open loop) and at saturation "
        f"(closed loop, concurrency {level}). Where a server answers fewer than {rate:g}/s, "
        "the open loop's latency is mostly the queue that builds up over the phase.",
        "",
    ]
    for dialect in _dialects(results):
        rows = []
        for target, figures in targets_of(results, dialect).items():
            offered = figures.get("rate")
            achieved = describe(offered["deliveries_per_s"]) if offered else DASH
            at_level = figures["saturation"][level]
            cells = [*_latency_cells(offered), achieved, *_latency_cells(at_level)]
            rows.append([NAMES[target], *cells])
        header = ["target", "p50", "p95", "p99", "answered/s", "sat. p50", "sat. p95", "sat. p99"]
        lines += [f"### {DIALECTS[dialect]}", "", *markdown_table(header, rows)]
    return lines + _relaxed_latency(results)


def _relaxed_latency(results: dict[str, Any]) -> list[str]:
    """The open loop at half the naive stack's best rate of the same run, where measured."""
    rows = []
    for dialect in _dialects(results):
        for target in ("labledger", "naive"):
            found = results["writes"][dialect][target].get("relaxed_rate")
            if found is not None:
                offered = describe(found["offered_per_s"])
                answered = describe(found["deliveries_per_s"])
                rows.append([f"{DIALECTS[dialect]}: {NAMES[target]}", offered, answered,
                             *_latency_cells(found)])  # fmt: skip
    if not rows:
        return []
    header = ["database: target", "offered/s", "answered/s", "p50", "p95", "p99"]
    return [
        "### At half the naive stack's best rate",
        "",
        "A second open loop per run, offering half the best deliveries/s the naive stack "
        "reached in that run's closed loops: a rate both servers carry however fast the host "
        "is, so that their latencies compare where the fixed rate above only measures a queue. "
        "Not a target of issue 4; the fixed rate is.",
        "",
        *markdown_table(header, rows),
    ]


def _statuses(figures: dict[str, Any]) -> str:
    """`202: 1975, 503: 25`; status 0 is a request that got no answer (reset or time-out)."""
    found = figures["statuses"].items()
    return ", ".join(f"{'no answer' if c == '0' else c}: {describe(n)}" for c, n in found)


def _burst_row(name: str, b: dict[str, Any]) -> list[str]:
    stored = f"{describe(b['attempts_stored'])} / {describe(b['attempts_expected'])}"
    figures = [describe(b["drain_s"], 2), describe(b["deliveries_per_s"]), describe(b["p99_ms"])]
    return [name, *figures, describe(b["errors"]), _statuses(b), stored]


def _storm_row(name: str, s: dict[str, Any]) -> list[str]:
    figures = [describe(s["record_sets"]), describe(s["status_5xx"]), describe(s["window_s"], 2)]
    return [name, _statuses(s), *figures]


BURST_HEADER = ["database: target", "drain (s)", "deliveries/s", "p99 (ms)", "errors",
                "answers (status: count)", "attempts stored / expected"]  # fmt: skip
STORM_HEADER = ["database: target", "answers (status: count)", "record sets", "5xx", "drain (s)"]


def burst_and_storm(results: dict[str, Any]) -> list[str]:
    bursts, storms = [], []
    for dialect in _dialects(results):
        for target in ("labledger", "naive"):
            figures = results["writes"][dialect][target]
            name = f"{DIALECTS[dialect]}: {NAMES[target]}"
            bursts.append(_burst_row(name, figures["burst"]))
            storms.append(_storm_row(name, figures["duplicate_storm"]))
    c = results["config"]
    return [
        f"## Deadline burst: {c['burst_pushes']:,} pushes from {c['burst_sessions']} sessions "
        f"at concurrency {c['burst_concurrency']}",
        "",
        *markdown_table(BURST_HEADER, bursts),
        f"## Duplicate storm: {c['storm_copies']} identical deliveries at concurrency "
        f"{c['storm_concurrency']}",
        "",
        "labledger must keep exactly one record set (checked through the API: the delivery's "
        "attempts, and one attempt per commit) and answer every copy without a 5xx; the naive "
        "stack has no idempotency, so each copy is stored again.",
        "",
        *markdown_table(STORM_HEADER, storms),
    ]


def reads(results: dict[str, Any]) -> list[str]:
    c = results["config"]
    lines = [
        f"## Reads at {c['read_attempts']:,} attempts (ms, sequential)",
        "",
        f"{c['read_requests']} requests per kind and round, {c['read_rounds']} rounds. *HTTP* is "
        "the full route; *store* is the SqlStore call the route makes (one read transaction), "
        "in-process, without the JSON; *SQL* runs equivalent queries bare on one connection "
        "(the database bound). The bulk load ends with `VACUUM (ANALYZE)` on PostgreSQL, the "
        "state autovacuum keeps a ledger of this size in (without it, the first read of each "
        "freshly loaded page also sets its hint bits).",
        "",
    ]
    for dialect in _dialects(results):
        r = results["reads"][dialect]
        rows = [
            [
                kind.replace("_", " "),
                *(describe(r[layer][kind][f"p{q}_ms"], 2) for layer, q in LAYERS),
            ]
            for kind in READ_KINDS
        ]
        header = ["read", "HTTP p50", "HTTP p99", "store p50", "store p99", "SQL p50", "SQL p99"]
        lines += [
            f"### {DIALECTS[dialect]} (bulk load {r['load_s']} s; answers verified: "
            f"{r['verified']})",
            "",
            *measured_apart({dialect: r}, "reads"),
            *markdown_table(header, rows),
        ]
    return lines


def _cpu_row(name: str, f: dict[str, Any]) -> list[str]:
    share = _share(
        median(f["generator_cpu_ms_per_request"]), median(f["server_cpu_ms_per_request"])
    )
    keys = ("generator", "server", "database")
    return [name, *(describe(f[f"{k}_cpu_ms_per_request"], 3) for k in keys), share]


def cpu(results: dict[str, Any]) -> list[str]:
    level = str(results["config"]["saturation_level"])
    rows = [
        _cpu_row(f"{DIALECTS[dialect]}: {NAMES[target]}", figures["saturation"][level])
        for dialect in _dialects(results)
        for target, figures in targets_of(results, dialect).items()
    ]
    header = ["database: target", "generator", "server", "PostgreSQL", "generator ÷ server"]
    return [
        f"## CPU per request (ms) at concurrency {level}",
        "",
        "The DB bound has no server: its *server* column is the writer (this process).",
        "",
        *markdown_table(header, rows),
    ]


def _share(part: float | None, whole: float | None) -> str:
    return f"{part / whole:.1%}" if part and whole else DASH


def generator(results: dict[str, Any]) -> list[str]:
    found = results["writes"]["http_bound"]["generator_calibration"]
    rows = []
    for client, name in (("raw", "the bench's raw client"), ("httpx2", "httpx2.AsyncClient")):
        f = found[client]
        gen, srv = f["generator_cpu_ms_per_request"], f["server_cpu_ms_per_request"]
        cells = [describe(f["deliveries_per_s"]), describe(gen, 3), describe(srv, 3)]
        rows.append([name, *cells, _share(median(gen), median(srv))])
    header = [
        "client",
        "deliveries/s",
        "generator CPU (ms)",
        "server CPU (ms)",
        "generator ÷ server",
    ]
    return [
        "## The generator's own CPU",
        "",
        f"Both clients against the HTTP bound (the cheapest server, where the generator's share "
        f"is largest) at concurrency {describe(found['concurrency'])}, CPU per request. Against "
        "labledger the share is smaller by the ratio of server CPU (see the table above).",
        "",
        *markdown_table(header, rows),
    ]


def memory(results: dict[str, Any]) -> list[str]:
    rows = []
    for dialect in _dialects(results):
        for target in HTTP_TARGETS:
            rss = targets_of(results, dialect)[target].get("peak_rss_mb")
            rows.append([f"{DIALECTS[dialect]}: {NAMES[target]} (write scenarios)", describe(rss)])
        reads_rss = results["reads"][dialect].get("peak_rss_mb")
        rows.append([f"{DIALECTS[dialect]}: labledger (reads)", describe(reads_rss)])
    return ["## Peak server RSS (MB, VmHWM)", "", *markdown_table(["server", "MB"], rows)]
