"""The Table 2 figure: change / no change per defense, ours with 95% intervals beside the paper's.

One panel per network; for each defense two bars (change, no change) with Wilson error bars,
and the paper's value as a white diamond on each bar, so agreement is visible at a glance.
"""

from __future__ import annotations

from pathlib import Path

from analysis.stats import Share
from analysis.table2 import Table2
from contract.names import DEFENSE_TITLES, NETWORK_TITLES

_COLORS = {"change": "#d95f02", "no change": "#1b9e77"}


def _errors(shares: list[Share]) -> list[list[float]]:
    lows = [s.percent - s.interval_percent[0] for s in shares]
    highs = [s.interval_percent[1] - s.percent for s in shares]
    return [lows, highs]


def plot_table2(table: Table2, out: str | Path) -> Path:
    """Write the figure as PNG to `out` (folders made as needed); the path written."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, and never a GUI backend from a CLI
    import matplotlib.pyplot as plt

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
            xs = [p + offset for p in positions]
            axis.bar(
                xs,
                [s.percent for s in shares],
                width=0.38,
                color=_COLORS[name],
                label=name,
                yerr=_errors(shares),
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
    figure.suptitle("Human labels of adversarial images (95% Wilson intervals)")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120)
    plt.close(figure)
    return path
