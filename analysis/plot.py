"""The figures: Table 2 (change / no change per defense beside the paper's) and the
psychometric curves (the shares against rho and against the model's confidence).

Table 2: one panel per network; for each defense two bars (change, no change) with error bars
(the annotator bootstrap's where there is one, else Wilson's), and the paper's value as a white
diamond on each bar, so agreement is visible at a glance.

Psychometric: one row per network, one column per outcome (change, no change, other); one line
per defense through its quantile bins (at each bin's mean), with annotator-bootstrap error bars,
and for change the logistic fit on rho as a thin line. PNG for documents, SVG for papers.
"""

from __future__ import annotations

from pathlib import Path

from analysis.clustered import ClusteredShare
from analysis.stats import Share
from analysis.table2 import Table2
from contract.names import DEFENSE_TITLES, NETWORK_TITLES

_COLORS = {"change": "#d95f02", "no change": "#1b9e77"}


_DEFENSE_COLORS = {
    "reference": "#7f7f7f",
    "at": "#1f77b4",
    "vat": "#2ca02c",
    "mm": "#9467bd",
    "ours": "#d62728",
}
FIGURE_FORMATS = ("png", "svg")


def _errors(shares: list[Share], clustered: list[ClusteredShare | None]) -> list[list[float]]:
    lows, highs = [], []
    for share, better in zip(shares, clustered, strict=True):
        low, high = (better or share).interval_percent
        lows.append(max(0.0, share.percent - low))
        highs.append(max(0.0, high - share.percent))
    return [lows, highs]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and never a GUI backend from a CLI
    import matplotlib.pyplot as plt

    return plt


def _save(figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = out.suffix.lstrip(".").lower() or "png"
    figure.savefig(out, format=fmt, dpi=120)
    return out


def plot_table2(table: Table2, out: str | Path) -> Path:
    """Write the figure to `out` (PNG, or SVG for a .svg name; folders made as needed)."""
    plt = _pyplot()

    networks = list(dict.fromkeys(result.network for result in table.results))
    figure, axes = plt.subplots(
        1, len(networks), figsize=(4.8 * len(networks), 4.2), squeeze=False, sharey=True
    )
    for axis, network in zip(axes[0], networks, strict=True):
        results = [r for r in table.results if r.network == network]
        positions = range(len(results))
        for offset, (name, pick) in zip(
            (-0.2, 0.2), (("change", "change"), ("no change", "no_change")), strict=True
        ):
            shares = [getattr(r.outcomes, pick) for r in results]
            clustered = [r.clustered.get(pick) for r in results]
            xs = [p + offset for p in positions]
            axis.bar(
                xs,
                [s.percent for s in shares],
                width=0.38,
                color=_COLORS[name],
                label=name,
                yerr=_errors(shares, clustered),
                capsize=3,
            )
            paper = [
                (x, getattr(r.paper, f"{pick}_pct"))
                for x, r in zip(xs, results, strict=True)
                if r.paper
            ]
            if paper:
                axis.scatter(
                    [x for x, _ in paper],
                    [v for _, v in paper],
                    marker="D",
                    s=28,
                    facecolor="white",
                    edgecolor="black",
                    zorder=3,
                    label="paper" if name == "change" else None,
                )
        axis.set_xticks(
            list(positions), [DEFENSE_TITLES.get(r.defense, r.defense) for r in results]
        )
        axis.set_title(NETWORK_TITLES.get(network, network))
        axis.set_ylim(0, 100)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("% of adversarial images")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.suptitle("Human labels of adversarial images (95% annotator-bootstrap intervals)")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    path = _save(figure, Path(out))
    plt.close(figure)
    return path


def plot_psychometric(table: Table2, variable: str, out: str | Path) -> Path | None:
    """The shares against `variable` ("rho" or "confidence"); None when no label has it."""
    import numpy as np

    networks = [
        n
        for n in dict.fromkeys(r.network for r in table.results)
        if any(c.variable == variable for r in table.results if r.network == n for c in r.curves)
    ]
    if not networks:
        return None
    plt = _pyplot()
    outcomes = (("change", "% change"), ("no_change", "% no change"), ("other", "% other"))
    figure, axes = plt.subplots(
        len(networks), 3, figsize=(12.5, 3.6 * len(networks)), squeeze=False, sharey="row"
    )
    for row, network in zip(axes, networks, strict=True):
        for axis, (name, title) in zip(row, outcomes, strict=True):
            for result in (r for r in table.results if r.network == network):
                curve = next((c for c in result.curves if c.variable == variable), None)
                if curve is None or not curve.bins:
                    continue
                color = _DEFENSE_COLORS.get(result.defense)
                points = [(b.mean, b.shares[name]) for b in curve.bins if b.shares[name]]
                xs = [x for x, _ in points]
                ys = [100 * s.fraction for _, s in points]
                errors = [
                    [max(0.0, y - 100 * s.low) for y, (_, s) in zip(ys, points, strict=True)],
                    [max(0.0, 100 * s.high - y) for y, (_, s) in zip(ys, points, strict=True)],
                ]
                axis.errorbar(
                    xs, ys, yerr=errors, marker="o", markersize=4, capsize=3, color=color,
                    label=DEFENSE_TITLES.get(result.defense, result.defense),
                )  # fmt: skip
                if name == "change" and curve.fit is not None and len(xs) > 1:
                    grid = np.linspace(curve.bins[0].low, curve.bins[-1].high, 100)
                    axis.plot(grid, 100 * curve.fit.curve(grid), color=color, lw=0.8, alpha=0.6)
            axis.set_ylim(-2, 102)
            axis.grid(alpha=0.3)
            axis.set_title(f"{NETWORK_TITLES.get(network, network)}: {title}")
            axis.set_xlabel("rho = ||r|| / ||x||" if variable == "rho" else "model confidence")
        row[0].set_ylabel("% of labels")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), frameon=False)
    figure.suptitle(
        f"Human labels against {'the perturbation size' if variable == 'rho' else 'the model confidence'}"
        " (quantile bins, 95% annotator-bootstrap intervals)"
    )
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path = _save(figure, Path(out))
    plt.close(figure)
    return path


def write_figures(table: Table2, folder: str | Path) -> list[Path]:
    """table2, psychometric_rho and psychometric_confidence, each as PNG and SVG, in `folder`."""
    root = Path(folder)
    written = []
    for fmt in FIGURE_FORMATS:
        written.append(plot_table2(table, root / f"table2.{fmt}"))
        for variable in ("rho", "confidence"):
            path = plot_psychometric(table, variable, root / f"psychometric_{variable}.{fmt}")
            if path is not None:
                written.append(path)
    return written
