"""The reliability diagram (PNG) of a model before and after temperature scaling.

Usage::

    write_reliability_diagram(path, record["calibration"])   # training.json's section

Two panels, before and after: per confidence bin (15 equal-width bins) the
accuracy of the top-1 prediction against its mean confidence, with the
diagonal of perfect calibration and the ECE in the title. Drawn with
matplotlib's object API on the Agg canvas: no pyplot state, no display needed.
The diagram is drawn from the bins recorded in ``training.json``, so training
(next to ``model.keras``) and export (next to the model card) draw the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medserve.repository import write_bytes_atomic

RELIABILITY_FILENAME = "reliability.png"


def write_reliability_diagram(path: Path, calibration: Mapping[str, Any]) -> None:
    """Draw both panels of a ``calibration`` section into ``path`` (PNG, atomically).

    Args:
        path: Where to write the PNG.
        calibration: The ``calibration`` section of ``training.json``: its
            ``reliability_bins`` (``before`` and ``after``, as
            :func:`medserve.calibration.reliability_bins` lists them),
            ``before`` / ``after`` ECE, ``temperature`` and ``samples``.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tables = calibration["reliability_bins"]
    temperature = float(calibration["temperature"])
    figure = Figure(figsize=(9, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    panels = (("before", "before calibration"), ("after", f"after (T = {temperature:.3f})"))
    for position, (key, title) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, position)
        table = [row for row in tables[key] if row["count"]]
        width = table[0]["upper"] - table[0]["lower"] if table else 1.0
        axes.bar(
            [(row["lower"] + row["upper"]) / 2 for row in table],
            [row["accuracy"] for row in table],
            width=width,
            edgecolor="black",
            color="#4c72b0",
            label="accuracy per bin",
        )
        axes.plot(
            [row["confidence"] for row in table],
            [row["accuracy"] for row in table],
            "o",
            color="#dd8452",
            label="(mean confidence, accuracy)",
        )
        axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        axes.set_title(f"{title}: ECE {calibration[key]['ece']:.3f}")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("confidence of the top-1 class")
        axes.set_ylabel("accuracy")
        axes.legend(loc="upper left", fontsize="small")
    figure.suptitle(
        f"Reliability on {calibration['samples']} validation images ({len(tables['before'])} bins)"
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())
