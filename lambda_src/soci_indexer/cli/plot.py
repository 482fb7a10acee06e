"""``pull-times --plot``: the two pull-time distributions as a PNG (matplotlib, an optional extra).

matplotlib is imported here only, when a plot is asked for: it is no dependency
of the indexer and never part of the Lambda asset.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from soci_indexer.errors import MissingExtra

if TYPE_CHECKING:
    from soci_indexer.aws.pull_times import Comparison, Distribution

INSTALL_HINT = "--plot needs matplotlib: pip install 'soci-fargate[plot]' (or matplotlib)"
BASELINE_COLOR = "#ff7f0e"  # the dashboard's colours: plain orange, SOCI-enabled green
CANDIDATE_COLOR = "#2ca02c"


def write_png(comparison: Comparison, path: Path) -> None:
    """Each task's pull as a dot over a box plot per group, and both cumulative
    distributions, titled with the reduction at p50 and p90."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        from matplotlib import pyplot
    except ImportError:
        raise MissingExtra(INSTALL_HINT) from None

    groups = (comparison.baseline, comparison.candidate)
    colors = (BASELINE_COLOR, CANDIDATE_COLOR)
    figure, (spread, cumulative) = pyplot.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    try:
        spread.boxplot(
            [g.seconds or (float("nan"),) for g in groups],
            orientation="horizontal",
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black"},
        )
        for row, (group, color) in enumerate(zip(groups, colors, strict=True), start=1):
            seconds = group.seconds
            jitter = [row + 0.12 * ((i * 7919) % 11 - 5) / 5 for i in range(len(seconds))]
            spread.scatter(seconds, jitter, s=22, color=color, alpha=0.8, zorder=3)
        spread.set_yticks([1, 2], [_label(g) for g in groups])
        spread.set_xlabel("image pull time (s)")
        spread.set_xlim(left=0)
        spread.grid(axis="x", alpha=0.3)

        for group, color in zip(groups, colors, strict=True):
            seconds = group.seconds
            if seconds:
                fractions = [(i + 1) / len(seconds) for i in range(len(seconds))]
                cumulative.step([0.0, *seconds], [0.0, *fractions], where="post", color=color)
        cumulative.set_xlabel("image pull time (s)")
        cumulative.set_ylabel("share of tasks pulled")
        cumulative.set_xlim(left=0)
        cumulative.set_ylim(0, 1.02)
        cumulative.grid(alpha=0.3)
        cumulative.legend([_label(g) for g in groups if g.seconds], loc="lower right")

        figure.suptitle(_title(comparison))
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)


def _label(group: Distribution) -> str:
    return f"{group.label} ({len(group.seconds)})"


def _title(comparison: Comparison) -> str:
    parts = []
    for percent in (50, 90):
        change = comparison.reduction(percent)
        if change is not None:
            parts.append(f"p{percent} {-change:+.0f}%")
    verdict = ", ".join(parts) if parts else "no comparison"
    return (
        f"Image pull time on {comparison.cluster}: {comparison.candidate.label} "
        f"against {comparison.baseline.label} ({verdict})"
    )
