"""``codesign generate``: write a complete output folder, or nothing.

``DIR/hw_config.json``, ``DIR/params/``, ``DIR/rtl/``, ``DIR/summary.{json,txt}`` and ``DIR/report/`` are
staged and replace what codesign wrote in ``DIR`` only when every stage succeeded
(:func:`codesign.files.output_folder`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .config import HardwareConfig
from .errors import one_line


def config_stats(config: HardwareConfig) -> list[dict]:
    """Per-layer statistics of a config (any tiling), per input vector."""
    rows = []
    for layer in config.layers:
        geo = config.geometry(layer)
        bits = np.concatenate([np.asarray(tile.adc_bits, dtype=np.int64) for tile in layer.tiles]
                              or [np.zeros(0, np.int64)])
        converted = int(np.count_nonzero(bits))
        empty = sum(1 for tile in layer.tiles if not any(tile.adc_bits))
        T = geo.input_cycles
        rows.append({
            "name": layer.key, "kind": layer.kind, "matrix": [layer.matrix.rows, layer.matrix.cols],
            "rows": geo.rows, "cols": geo.cols, "tiles": len(layer.tiles), "empty_tiles": empty,
            "columns": int(bits.size), "skipped_columns": int(bits.size) - converted,
            "max_bits": int(bits.max(initial=0)),
            "mean_bits": float(bits.sum()) / converted if converted else 0.0,
            "uniform_bits": geo.uniform_bits, "bits_histogram": np.bincount(bits).tolist(),
            "conversions": T * converted, "conversions_without_skip": T * int(bits.size),
            "positions": layer.positions,
        })
    return rows


def totals(stats: list[dict]) -> dict:
    keys = ("tiles", "empty_tiles", "columns", "skipped_columns", "conversions", "conversions_without_skip")
    total = {key: sum(row[key] for row in stats) for key in keys}
    width = max((len(row["bits_histogram"]) for row in stats), default=0)
    total["bits_histogram"] = [sum(row["bits_histogram"][b] for row in stats if b < len(row["bits_histogram"]))
                               for b in range(width)]
    return total


def format_table(stats: list[dict]) -> str:
    """A readable per-layer table (conversions are per input vector)."""
    header = ("layer", "kind", "matrix", "xbar", "tiles", "empty", "columns", "skipped", "max b", "mean b",
              "conversions", "saved by skip")
    lines = []
    for row in stats + [dict(totals(stats), name="total", kind="", matrix=None, rows=None, max_bits=None,
                             mean_bits=None)]:
        saved = row["conversions_without_skip"] - row["conversions"]
        lines.append((
            one_line(row["name"]), row["kind"],
            f"{row['matrix'][0]}×{row['matrix'][1]}" if row["matrix"] else "",
            f"{row['rows']}×{row['cols']}" if row["rows"] else "",
            str(row["tiles"]), str(row["empty_tiles"]), str(row["columns"]), str(row["skipped_columns"]),
            "" if row["max_bits"] is None else str(row["max_bits"]),
            "" if row["mean_bits"] is None else f"{row['mean_bits']:.2f}",
            str(row["conversions"]),
            f"{saved} ({100 * saved / row['conversions_without_skip']:.1f}%)" if row["conversions_without_skip"] else "0"))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    def fmt(cells: tuple) -> str:
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, lines[:-1]), rule, fmt(lines[-1])])


def histogram_line(histogram: list[int]) -> str:
    return "  ".join(f"{b}b:{n}" for b, n in enumerate(histogram) if n)


def generate(config: HardwareConfig, out: Path, force: bool = False, sweep: dict | None = None,
             report: bool = True, inputs: Iterable[str | Path | None] = (),
             log: Callable[[str], None] = lambda message: None) -> dict:
    """Write the output folder for ``config``; returns the summary (also in summary.json).

    ``sweep`` (the crossbar-size search, as JSON) is written to ``search.json`` when given;
    ``report`` writes ``report/`` (:func:`codesign.report.render_report`, default cost settings)
    last. The folder is written as :func:`codesign.files.output_folder` does: all or nothing,
    replacing (with ``force``) only what codesign wrote, never one of the ``inputs``. ``log``
    gets one line per stage.
    """
    from .files import output_folder
    from .params import write_params
    from .rtl import write_rtl

    config = config.written_in(out)   # the model path relative to out (docs/design.md §4)
    stats = config_stats(config)
    tiles = sum(row["tiles"] for row in stats)
    with output_folder(out, "generate", force=force, inputs=inputs, log=log) as tmp:
        (tmp / "hw_config.json").write_text(config.to_json())
        log(f"writing parameter files of {len(config.layers)} layers, {tiles} tiles")
        files = write_params(config, tmp / "params")
        rtl = write_rtl(config, tmp / "rtl", tmp / "params", log=log)
        if sweep is not None:
            (tmp / "search.json").write_text(json.dumps(sweep, indent=2) + "\n")
        summary = {
            "model": config.model.model_dump() if config.model else None,
            "crossbar": config.crossbar.model_dump(),
            "layers": stats, "total": totals(stats),
            "files": {"hw_config": "hw_config.json", "params": len(files), "rtl_modules": len(rtl["modules"])},
            "rtl": rtl,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "summary.txt").write_text(summary_text(summary) + "\n")
        if report:
            from .report import render_report

            log("writing report/")
            render_report(tmp, tmp / "report")
            summary["files"]["report"] = "report/"
    return summary


def summary_text(summary: dict) -> str:
    from .rtl import rtl_summary_text

    total = summary["total"]
    saved = total["conversions_without_skip"] - total["conversions"]
    share = 100 * saved / total["conversions_without_skip"] if total["conversions_without_skip"] else 0.0
    return "\n".join([
        format_table(summary["layers"]), "",
        f"ADC bits over all physical columns: {histogram_line(total['bits_histogram'])}",
        f"column skip saves {saved} of {total['conversions_without_skip']} conversions per input vector "
        f"({share:.1f}%); {total['empty_tiles']} of {total['tiles']} crossbars are empty",
        "", rtl_summary_text(summary["rtl"]),
    ])
