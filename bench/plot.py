"""The PNG: throughput and p99 latency against concurrency, labledger beside its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.figures import DIALECTS, NAMES, targets_of

STYLE = {"labledger": "o-", "naive": "s--", "http_bound": "^:", "db_bound": "d-."}
PANELS = (("deliveries_per_s", "deliveries/s"), ("p99_ms", "p99 latency (ms)"))


def _series(
    saturation: dict[str, Any], figure: str
) -> tuple[list[int], list[float], list[list[float]]]:
    # A level with no answer inside its window (a tiny smoke run on a busy machine) has no
    # latency figure: it is left out of the line rather than failing the whole report.
    levels = [lv for lv in sorted(saturation, key=int) if saturation[lv][figure] is not None]
    values = [saturation[level][figure] for level in levels]
    medians = [v["median"] for v in values]
    errors = [[m - v["min"] for m, v in zip(medians, values, strict=True)],
              [v["max"] - m for m, v in zip(medians, values, strict=True)]]  # fmt: skip
    return [int(level) for level in levels], medians, errors


def _panel(axis: Any, found: dict[str, Any], dialect: str, panel: tuple[str, str]) -> None:
    figure_name, label = panel
    for target, figures in found.items():
        x, y, errors = _series(figures["saturation"], figure_name)
        axis.errorbar(x, y, yerr=errors, fmt=STYLE[target], capsize=3, label=NAMES[target])
    levels = sorted({int(lv) for f in found.values() for lv in f["saturation"]})
    axis.set_xscale("log", base=2)
    axis.set_xticks(levels, [str(level) for level in levels])
    axis.set_yscale("log")
    axis.set_xlabel("concurrency (connections)")
    axis.set_ylabel(label)
    axis.set_title(f"{DIALECTS[dialect]}: {label}")
    axis.grid(True, which="both", alpha=0.3)


def plot(results: dict[str, Any], path: Path) -> bool:
    """Draw the PNG; False when matplotlib (the `bench` dependency group) is not installed."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        return False

    matplotlib.use("Agg")  # files only, no display; chosen here, not at import time
    from matplotlib import pyplot

    dialects = list(results["dialects"])
    figure, axes = pyplot.subplots(
        len(PANELS), len(dialects), figsize=(6 * len(dialects), 8), squeeze=False
    )
    for column, dialect in enumerate(dialects):
        for row, panel in enumerate(PANELS):
            _panel(axes[row][column], targets_of(results, dialect), dialect, panel)
    axes[0][0].legend(fontsize=8)
    figure.suptitle("labledger against its bounds (median of runs, bars: min to max)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return True
