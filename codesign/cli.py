"""The ``codesign`` command line (docs/design.md §6).

Only argparse is imported at start-up, so ``codesign --help`` answers at once; each command
imports the stages it needs. Errors about the user's input print one line and exit with 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

CROSSBAR_DEFAULTS = {"rows": 128, "cols": 128, "cell_bits": 2, "dac_bits": 1}
BUNDLED_NOTE = "no --model given: using the bundled model (digits CNN, examples/digits_cnn_pruned.pt)"
#: Periphery options and their ``PeripheryConfig`` fields.
PERIPHERY_OPTIONS = {"adc_interface": "adc_interface", "clock": "clock_hz", "adc_rate": "adc_sample_rate_hz",
                     "stream_bits": "stream_bits"}


def note(message: str) -> None:
    """Progress and notes go to stderr, so stdout stays machine-readable; one line each."""
    from .errors import one_line

    print(f"codesign: {one_line(message)}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse with the project's refusal: one line, exit status 1."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from .errors import one_line

        print(f"codesign: error: {one_line(message)} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(1)


# --- numeric options: argparse types with the ranges of the configs -----------------------------

def integer(low: int | None = None, high: int | None = None, *, config: str | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``low``…``high``, or in the range the pydantic field ``config``
    (``"Model.field"`` of :mod:`codesign.config`) allows — looked up when an option is given, so
    ``--help`` imports nothing and the config stays the one source of the rule."""
    def parse(text: str) -> int:
        lo, hi = low, high
        if config:
            from . import config as configs

            model, field = config.split(".")
            lo, hi = configs.field_range(getattr(configs, model), field)
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"{lo}…{hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {span}")
        return value

    return parse


def number(low: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number, at least ``low``."""
    def parse(text: str) -> float:
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{value:g} is out of range: give at least {low:g}")
        return value

    return parse


SEED = integer(0, 2**32 - 1)


# --- shared options ---------------------------------------------------------------------------

def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="FILE",
                       help="codesign checkpoint, state_dict, safetensors, TorchScript, torch.export .pt2 or ONNX file, "
                            "float or quantized (default: the bundled digits CNN)")
    group.add_argument("--weight-bits", type=integer(config="LayerConfig.weight_bits"), metavar="WB",
                       help="two's-complement weight bits, 2–16 (default: the checkpoint's, else what a quantized "
                            "model's integers need, else 8)")
    group.add_argument("--input-bits", type=integer(config="LayerConfig.input_bits"), metavar="A",
                       help="unsigned activation bits, 1–16 (default: the checkpoint's, else 8)")
    group.add_argument("--per-channel", action="store_true", help="one quantization scale per output channel")
    group.add_argument("--trust-pickle", action="store_true",
                       help="allow a pickled full nn.Module (unpickling can run code: only for files you trust)")
    group.add_argument("--ignore-unsupported", action="store_true",
                       help="skip layers that cannot map onto crossbars (Conv1d, Conv3d, …) instead of failing")


def add_crossbar_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("crossbar (docs/design.md §3)")
    add_geometry_args(group)
    group.add_argument("--adcs", type=integer(config="CrossbarConfig.adcs"), metavar="N",
                       help="ADCs per crossbar, 1 … cols (default: one per 128 columns)")
    group.add_argument("--search", nargs="?", const="global", choices=("global", "layer"),
                       help="sweep rows and cols over 32–512 and keep the best size globally (default) "
                            "or per layer")
    group.add_argument("--config", metavar="FILE", help="use this (edited) hw_config.json instead of the analysis")
    group.add_argument("--allow-model-mismatch", action="store_true",
                       help="use a --config made for another model file (its bits may not be lossless here)")
    add_periphery_args(parser)


def add_periphery_args(parser: argparse.ArgumentParser) -> None:
    periphery = parser.add_argument_group("periphery (docs/periphery.md)")
    periphery.add_argument("--adc-interface", choices=("macro", "sar"),
                           help="macro: asynchronous ADC macros started once per conversion (default); "
                                "sar: the synchronous SAR controller, one comparison per clock cycle")
    periphery.add_argument("--clock", type=number(0), metavar="HZ", help="digital clock, at most 1e9 (default 1e9)")
    periphery.add_argument("--adc-rate", type=number(0), metavar="HZ",
                           help="macro: conversions per second of one ADC (default 1.2e9, ISAAC's)")
    periphery.add_argument("--stream-bits", type=integer(config="PeripheryConfig.stream_bits"), metavar="W",
                           help="AXI4-Stream data width, one result up to 128 (default 128)")


def add_geometry_args(group: Any) -> None:
    """--rows, --cols, --cell-bits, --dac-bits with the ranges of ``CrossbarConfig``."""
    group.add_argument("--rows", type=integer(config="CrossbarConfig.rows"), metavar="R",
                       help="wordlines per crossbar (default 128)")
    group.add_argument("--cols", type=integer(config="CrossbarConfig.cols"), metavar="C",
                       help="physical columns per crossbar, at least 2·S (default 128)")
    group.add_argument("--cell-bits", type=integer(config="CrossbarConfig.cell_bits"), metavar="c",
                       help="bits per cell, 1–4 (default 2)")
    group.add_argument("--dac-bits", type=integer(config="CrossbarConfig.dac_bits"), metavar="v",
                       help="input bits per cycle, 1–input bits (default 1)")


def load_inputs(args: argparse.Namespace, log: Callable[[str], None] = lambda message: None
                ) -> tuple[Any, Any, dict | None]:
    """Model and HardwareConfig from the command line; the sweep too when ``--search`` ran. ``log``
    gets a line per stage."""
    from .config import check_against_model, load_config
    from .ingest import load_model

    explicit = [name for name in (*CROSSBAR_DEFAULTS, "adcs", *PERIPHERY_OPTIONS) if getattr(args, name) is not None]
    if args.config:
        if explicit or args.search:
            flag = "--search" if args.search else "--" + explicit[0].replace("_", "-")
            raise_error(f"{flag} conflicts with --config: the config fixes the crossbar and the periphery; "
                        f"edit it instead")
        config = load_config(args.config)
        bits = {(layer.weight_bits, layer.input_bits) for layer in config.layers}
        if len(bits) > 1:
            raise_error(f"{args.config}: layers with different weight or input bits are not supported yet")
        weight_bits, input_bits = bits.pop() if bits else (args.weight_bits, args.input_bits)
        per_channel = config.model.per_channel if config.model else args.per_channel
        path = args.model
        if path is None and config.model is not None and not config.model.bundled:
            path = config.model.locate(Path(args.config).parent)
            note(f"no --model given: using the model {args.config} was made from, {path}")
        elif path is None:
            note(BUNDLED_NOTE)
        model = load_model(path, weight_bits=weight_bits, input_bits=input_bits, per_channel=per_channel,
                           trust_pickle=args.trust_pickle, ignore_unsupported=args.ignore_unsupported)
        show_model_notes(model)
        check_against_model(config, model.layers)
        if config.model and config.model.sha256 != model.info.sha256:
            if not args.allow_model_mismatch:
                raise_error(f"{args.config} was made for another model file ({config.model.path}, sha256 "
                            f"{config.model.sha256[:12]}…, not {model.info.path}): give that model with --model, "
                            f"or pass --allow-model-mismatch (its bits may not be lossless here)")
            note(f"{args.config} was made for another model file ({config.model.path}); using it for "
                 f"{model.info.path}, whose bits may not be lossless here")
        # Whatever is written from here on names the model actually used.
        return model, config.model_copy(update={"model": model.info}), None

    from .analysis import analyze, default_adcs, search

    model = model_from_args(args)
    values = {name: default if getattr(args, name) is None else getattr(args, name)
              for name, default in default_crossbar(model, bool(args.search)).items()}
    values["adcs"] = default_adcs(values["cols"]) if args.adcs is None else args.adcs
    crossbar = crossbar_config(values)
    sweep = None
    per_layer = None
    log(f"analysing {len(model.layers)} crossbar matrices ({sum(spec.q.size for spec in model.layers):,} weights)")
    if args.search:
        sweep = search(model, crossbar)
        best = sweep["best"]
        crossbar = crossbar.model_copy(update={"rows": best.rows, "cols": best.cols, "adcs": default_adcs(best.cols)})
        if args.search == "layer":
            per_layer = {key: crossbar.model_copy(update={"rows": p.rows, "cols": p.cols, "adcs": default_adcs(p.cols)})
                         for key, p in sweep["best_per_layer"].items()}
    config = analyze(model, crossbar, per_layer).to_config()
    return model, config.model_copy(update={"periphery": periphery_config(args)}), sweep


def model_from_args(args: argparse.Namespace) -> Any:
    """The ``--model`` (the bundled one when not given, with a note) read with the model options."""
    from .ingest import load_model

    if args.model is None:
        note(BUNDLED_NOTE)
    model = load_model(args.model, weight_bits=args.weight_bits, input_bits=args.input_bits,
                       per_channel=args.per_channel, trust_pickle=args.trust_pickle,
                       ignore_unsupported=args.ignore_unsupported)
    show_model_notes(model)
    return model


def periphery_config(args: argparse.Namespace) -> Any:
    """The ``PeripheryConfig`` of the periphery options (defaults where not given)."""
    from pydantic import ValidationError

    from .config import PeripheryConfig

    given = {field: getattr(args, option) for option, field in PERIPHERY_OPTIONS.items()
             if getattr(args, option) is not None}
    try:
        return PeripheryConfig(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = next(o for o, f in PERIPHERY_OPTIONS.items() if f == err["loc"][0])
        raise_error(f"--{option.replace('_', '-')}: {err['msg']}")


def default_crossbar(model: Any, search: bool = False) -> dict:
    """The crossbar a checkpoint was pruned for (its ``meta``), else the defaults of docs/design.md §3.

    With ``search`` the rows and columns come from the sweep, so the note says only what is kept.
    """
    pruned_for = model.meta.get("crossbar") or {}
    values = {name: pruned_for.get(name, default) for name, default in CROSSBAR_DEFAULTS.items()}
    if pruned_for:
        size = f"{values['rows']}×{values['cols']} crossbars ({values['cell_bits']}-bit cells, {values['dac_bits']}-bit DAC)"
        kept = ("--search sweeps rows and cols and keeps its cell and DAC bits where no option is given" if search
                else "using them where no crossbar option is given")
        note(f"the model was pruned for {size}: {kept}")
    return values


def crossbar_config(values: dict) -> Any:
    from pydantic import ValidationError

    from .config import CrossbarConfig
    from .errors import validation_message

    try:
        return CrossbarConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = str(err["loc"][0]) if err["loc"] else "adcs"      # the model-level rule is about --adcs
        raise_error(f"--{option.replace('_', '-')}: {validation_message(err)}")


def show_model_notes(model: Any) -> None:
    for message in model.notes:
        note(message)
    if model.ignored:
        shown = ", ".join(model.ignored[:4]) + (f" and {len(model.ignored) - 4} more" if len(model.ignored) > 4 else "")
        note(f"{len(model.layers)} crossbar matrices; ignored {len(model.ignored)} tensors: {shown}")


def raise_error(message: str) -> None:
    from .errors import CodesignError

    raise CodesignError(message)


def model_inputs(args: argparse.Namespace) -> list[str | None]:
    """The files a command reads (model, config, hyperparameters, data folders): no output may
    replace them."""
    from .ingest import bundled_model_path

    files = [getattr(args, name, None) for name in ("model", "config", "calibrated", "inputs", "hparams", "resume")]
    data = getattr(args, "data", None)
    if data and data.split(":", 1)[0] in ("cifar10", "imagefolder") and ":" in data:
        files.append(data.split(":", 2)[1])
    if getattr(args, "model", None) is None:
        files.append(str(bundled_model_path().parent))
    return files


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--ray``: where the work runs (:mod:`codesign.engine`)."""
    group = parser.add_argument_group("execution (README 'Scaling out')")
    group.add_argument("--workers", type=integer(1), metavar="N",
                       help="parallel workers (default: every CPU of this machine; 1 runs here, in this process); "
                            "local Ray with the 'dist' extra, else a process pool")
    group.add_argument("--ray", metavar="ADDRESS",
                       help="run on an existing Ray cluster (HOST:PORT of its head node, ray://HOST:PORT or auto); "
                            "every node needs codesign installed")


def add_nonideal_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("non-idealities (off by default; README 'The arithmetic')")
    group.add_argument("--conductance-sigma", type=number(0), default=0.0, metavar="σ",
                       help="log-normal cell variation d·e^θ, θ ~ N(0, σ²), drawn once per cell")
    group.add_argument("--adc-noise", type=number(0), default=0.0, metavar="σ",
                       help="Gaussian noise on every ADC input, in units of one cell level at one input LSB")
    group.add_argument("--seed", type=SEED, default=0, help="seed of both draws (default 0)")


def nonideal_from(args: argparse.Namespace) -> Any:
    from .golden import NonIdeality

    try:
        return NonIdeality(args.conductance_sigma, args.adc_noise, args.seed)
    except ValueError as exc:
        raise_error(f"--{str(exc).split()[0].replace('_', '-')}: {exc}")


def format_sweep(sweep: dict) -> str:
    best = sweep["best"]
    lines = ["crossbar-size sweep (objective J = E/E_ref + A/A_ref, lower is better; docs/cost-models.md §5):",
             f"  {'rows':>5} {'cols':>5} {'tiles':>7} {'energy [nJ]':>16} {'area [mm²]':>11} {'J':>7}"]
    for p in sweep["global"]:
        mark = "  ← best" if (p.rows, p.cols) == (best.rows, best.cols) else ""
        lines.append(f"  {p.rows:>5} {p.cols:>5} {p.tiles:>7} {p.energy_pj / 1e3:>16.3f} "
                     f"{p.area_um2 / 1e6:>11.4f} {p.objective:>7.3f}{mark}")
    lines.append("best per layer: " + ", ".join(f"{key} {p.rows}×{p.cols}" for key, p in sweep["best_per_layer"].items()))
    return "\n".join(lines)


def sweep_json(sweep: dict, mode: str) -> dict:
    """``search.json``: the sweep, and whether the folder took the global best (``mode="global"``) or
    each layer's (``"layer"``)."""
    from dataclasses import asdict

    return {"objective": "J = E/E_ref + A/A_ref (docs/cost-models.md §5)", "mode": mode,
            "global": [asdict(p) for p in sweep["global"]], "best": asdict(sweep["best"]),
            "layers": {k: [asdict(p) for p in v] for k, v in sweep["layers"].items()},
            "best_per_layer": {k: asdict(p) for k, p in sweep["best_per_layer"].items()}}


# --- commands ---------------------------------------------------------------------------------

def cmd_analyze(args: argparse.Namespace) -> int:
    from .generate import config_stats, format_table, histogram_line, totals

    model, config, sweep = load_inputs(args)
    if sweep:
        print(format_sweep(sweep), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        sys.stdout.write(config.written_in(Path.cwd()).to_json())
        return 0
    stats = config_stats(config)
    print(format_table(stats))
    total = totals(stats)
    print(f"\nADC bits over all physical columns: {histogram_line(total['bits_histogram'])}")
    print("conversions are per input vector; 'saved by skip' counts columns whose ADC is never started (b = 0)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .files import check_outside_inputs, check_replaceable
    from .generate import generate, summary_text

    out = Path(args.out)
    check_outside_inputs(out, model_inputs(args), "--out")
    check_replaceable(out, args.force)
    model, config, sweep = load_inputs(args, log=note)
    summary = generate(config, out, force=args.force, sweep=sweep_json(sweep, args.search) if sweep else None,
                       report=not args.no_report, inputs=model_inputs(args), log=note)
    print(summary_text(summary))
    report = ", report/" if "report" in summary["files"] else ""
    print(f"\nwrote {out}/: hw_config.json, params/ ({summary['files']['params']} files), "
          f"rtl/ ({summary['files']['rtl_modules']} Verilog modules), summary.json{report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .cost import CostSettings
    from .report import headline, write_report

    values = {"adc_model": args.adc_model, "tech_nm": args.tech_nm, "sample_rate_hz": args.sample_rate,
              "walden_fom_fj": args.walden_fom}
    try:
        settings = CostSettings(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = {"adc_model": "adc-model", "tech_nm": "tech-nm", "sample_rate_hz": "sample-rate",
                "walden_fom_fj": "walden-fom"}[str(err["loc"][0])]
        raise_error(f"--{flag}: {err['msg']}")
    summary = write_report(Path(args.dir), settings, calibrated=args.calibrated, synthesize=not args.no_synth,
                           fpga=not args.no_fpga, data=args.data)
    print(headline(summary))
    print(f"\nwrote {Path(args.dir) / 'report'}/: report.html, report.md, summary.json")
    return 0


def cmd_emulate(args: argparse.Namespace) -> int:
    import json

    if (args.layer is None) == (args.data is None):
        raise_error("give --layer NAME --inputs X.npy --out Y.npy (one layer) or --data SPEC (whole-model accuracy)")
    if args.layer is not None and (args.inputs is None or args.out is None):
        raise_error("--layer needs --inputs X.npy and --out Y.npy")
    from .files import check_outside_inputs, write_file

    if args.out is not None:
        check_outside_inputs(args.out, model_inputs(args), "--out")
        if Path(args.out).exists() and not args.force:
            raise_error(f"{args.out} exists; pass --force to replace it")
    nonideal = nonideal_from(args)
    device = device_from(args)
    model, config, _ = load_inputs(args)
    if args.layer is not None:
        import numpy as np

        from .emulate import emulate_layer, load_layer_inputs

        key = args.layer if args.group == 0 else f"{args.layer}#{args.group}"
        layer = config.layer(key)
        x = load_layer_inputs(args.inputs, layer.key, layer.matrix.rows, layer.input_bits)
        y = emulate_layer(model, config, layer.key, x, nonideal)
        write_file(args.out, lambda file: np.save(file, y), force=args.force, inputs=model_inputs(args))
        note(f"wrote {args.out}: int64 outputs {list(y.shape)} of layer '{layer.key}'")
        return 0
    from .emulate import accuracy_report, format_accuracy_report

    place_model(model, device)
    report = accuracy_report(model, config, args.data, args.split, nonideal, progress=True)
    print(json.dumps(report, indent=2) if args.json else format_accuracy_report(report))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import json

    from .calibrate import budget_file, format_budget_sweep, format_calibration_report, run_calibrations

    from .files import check_outside_inputs, write_file

    budgets = [args.budget] if args.budget is not None else parse_budgets(args.budgets)
    out = Path(args.out)
    outs = [out] if args.budget is not None else [budget_file(out, budget) for budget in budgets]
    for path in outs:
        check_outside_inputs(path, model_inputs(args), "--out")
        if path.exists() and not args.force:
            raise_error(f"{path} exists; pass --force to replace it")
    device = device_from(args)
    model, base, _ = load_inputs(args)
    place_model(model, device)
    results = run_calibrations(model, base, args.data, budgets, args.search_split, progress=True)
    for path, (config, report) in zip(outs, results):
        text = config.written_in(path.parent).to_json().encode()
        write_file(path, lambda file, text=text: file.write(text), force=args.force, inputs=model_inputs(args))
        report["config"] = str(path)
    reports = [report for _, report in results]
    if args.json:
        print(json.dumps(reports[0] if args.budget is not None else reports, indent=2))
    else:
        folder = out.parent if (out.parent / "hw_config.json").is_file() else None
        print(format_calibration_report(reports[0]) if args.budget is not None else format_budget_sweep(reports, folder))
    return 0


def parse_budgets(text: str) -> list[float]:
    """``--budgets 0.25,0.5,1,2`` → distinct budgets in the order given."""
    try:
        budgets = [number(0)(item) for item in text.split(",") if item.strip()]
    except argparse.ArgumentTypeError:
        raise_error(f"--budgets takes comma-separated numbers (percentage points), e.g. 0.25,0.5,1,2; not '{text}'")
    if not budgets or len(set(budgets)) != len(budgets):
        raise_error(f"--budgets needs distinct numbers, e.g. 0.25,0.5,1,2; not '{text}'")
    return budgets


def cmd_simulate(args: argparse.Namespace) -> int:
    from .files import locked
    from .simulate import format_results, simulate

    if not Path(args.dir).is_dir():
        raise_error(f"{args.dir} is not a folder: give the output folder of 'codesign generate'")
    with locked(Path(args.dir), "simulate"):
        results = simulate(args.dir, simulator=args.sim, vectors=args.vectors, tiles=args.tiles, waves=args.waves,
                           mode=args.mode, model_path=args.model, seed=args.seed, progress=True,
                           corners=not args.no_corners, log=note,
                           workers=args.workers, address=args.ray, sample=args.sample)
    print(format_results(results))
    note(f"wrote {Path(args.dir) / 'sim' / 'results.json'}")
    return 0 if results["passed"] else 1


#: ``codesign explore`` options and the :class:`codesign.explore.Space` fields they set.
SPACE_OPTIONS = {"rows": "rows", "cols": "cols", "cell_bits": "cell_bits", "dac_bits": "dac_bits", "adcs": "adcs",
                 "adc_model": "adc_model", "budgets": "budgets", "data": "data", "search_split": "search_split"}


def explore_space(args: argparse.Namespace) -> Any:
    """The sweep of ``--space FILE`` with the list options on top (comma-separated values)."""
    from .explore import parse_space
    from .files import read_json

    values: dict = {}
    if args.space:
        values = read_json(Path(args.space), "give a JSON object of lists, e.g. {\"rows\": [64, 128]}")
        if not isinstance(values, dict):
            raise_error(f"{args.space}: give a JSON object of lists, e.g. {{\"rows\": [64, 128]}}")
    for option, field in SPACE_OPTIONS.items():
        given = getattr(args, option)
        if given is not None:
            values[field] = given if option in ("data", "search_split") else \
                [item.strip() for item in given.split(",") if item.strip()]
    from_file = {field for field in values if args.space and getattr(args, field, None) is None}
    return parse_space(values, lambda field: f"{args.space}: {field}" if field in from_file
                       else f"--{field.replace('_', '-')}")


def cmd_explore(args: argparse.Namespace) -> int:
    from .explore import explore, format_front
    from .files import check_outside_inputs

    space = explore_space(args)
    out = Path(args.out)
    check_outside_inputs(out, model_inputs(args), "--out")
    model = model_from_args(args)
    result = explore(model, space, out, periphery_config(args), workers=args.workers, address=args.ray,
                     force=args.force, progress=True, log=note)
    print(format_front(result))
    print(f"\nwrote {out}/: points.jsonl, pareto.json, explore.html")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from .config import schema_json

    sys.stdout.write(schema_json())
    return 0


# --- pruning and training (codesign.prune) ----------------------------------------------------

PRUNE_METHODS = ("dub", "tinyadc", "crossbar", "column", "crimp", "bitslice", "magnitude")


def add_training_args(parser: argparse.ArgumentParser, command: str) -> None:
    """Options shared by ``prune`` and ``train``; ``command`` picks the texts that differ."""
    group = parser.add_argument_group("training")
    group.add_argument("--data", metavar="SPEC",
                       help="digits (default), cifar10:PATH (python batches) or imagefolder:PATH[:SIZE]")
    group.add_argument("--out", metavar="FILE",
                       help="output checkpoint; an existing file needs --force (Ctrl-C leaves FILE-stem.resume.pt)")
    group.add_argument("--force", action="store_true",
                       help="replace an existing --out" + (" (and the FILE-stem.dense.pt a zoo --model is trained "
                                                          "into first)" if command == "prune" else ""))
    group.add_argument("--epochs", type=integer(1), metavar="N", help=(
        "epochs of every training phase, the dense pre-training of a zoo --model included (default: the method's)"
        if command == "prune" else "training epochs (default: 40 for digits, 200 for other data)"))
    group.add_argument("--seed", type=SEED, metavar="S", help="seed of initialisation, batch order and noise (default 0)")
    example = "finetune.lr=0.005" if command == "prune" else "train.lr=0.001"
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help=f"override a hyperparameter, e.g. {example} (repeatable; see --show-hparams)")
    group.add_argument("--hparams", metavar="FILE", help="JSON file of hyperparameter overrides")
    group.add_argument("--show-hparams", action="store_true", help="print the hyperparameters as JSON and exit")
    group.add_argument("--resume", metavar="FILE", help="continue the interrupted run saved in FILE")
    group.add_argument("--threads", type=integer(1), metavar="N",
                       help="PyTorch CPU threads while training (default: 1 for models under a million "
                            "parameters, else all cores)")
    add_device_arg(group)


def add_device_arg(parser: "argparse.ArgumentParser | argparse._ArgumentGroup") -> None:
    """``--device cpu|cuda|auto`` (default cpu)."""
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="where PyTorch runs: cpu (default), cuda (exact float32, no TF32) or auto (cuda if present)")


def main_replica() -> bool:
    from .device import main_replica

    return main_replica()


def device_from(args: argparse.Namespace) -> str:
    """The checked ``--device`` of ``args`` (a one-line error for cuda without a GPU)."""
    from .device import resolve_device

    resolve_device(args.device)
    return args.device


def place_model(model: Any, device: str) -> None:
    """Move the model's architecture to ``device`` (emulate, calibrate), noting when it stays on the CPU."""
    from .device import model_to, resolve_device

    stays = model_to(model, resolve_device(device))
    if stays:
        note(stays)


def training_overrides(args: argparse.Namespace) -> dict:
    from .prune.runner import merge_overrides, parse_assignments, read_params_file

    base = read_params_file(args.hparams) if args.hparams else {}
    return merge_overrides(base, parse_assignments(args.set))


def start_training(args: argparse.Namespace, method: str, also_written: tuple[Path, ...] = ()) -> tuple[dict, Path] | None:
    """Common part of prune and train: --show-hparams, --out (and ``also_written``, files the run
    writes besides --out) and --resume checks. Returns (overrides, out) or None when only the
    hyperparameters were shown."""
    import json

    from .prune.runner import resolve_params

    overrides = training_overrides(args)
    if args.show_hparams:
        print(json.dumps(resolve_params(method, overrides, args.epochs, args.data or "digits"), indent=2))
        return None
    if args.resume and (overrides or args.epochs is not None):
        raise_error("--set, --hparams and --epochs are fixed by the run being resumed: drop them")
    if not args.out:
        raise_error("--out FILE is required: where to write the checkpoint")
    from .files import check_outside_inputs
    from .prune.runner import resume_path

    out = Path(args.out)
    check_outside_inputs(out, model_inputs(args), "--out")
    check_outside_inputs(resume_path(out), [getattr(args, "model", None), args.hparams], "--out (its resume file)")
    existing = [path for path in (out, *also_written) if path.exists()]
    if existing and not args.force:
        raise_error(f"{existing[0]} exists; pass --force to replace it")
    return overrides, out


def cmd_prune(args: argparse.Namespace) -> int:
    from .prune import runner

    if not args.method and not args.resume:
        raise_error(f"--method is required: one of {', '.join(PRUNE_METHODS)}")
    dense_out = None if args.resume or not args.out else \
        runner.pretraining(args.model, args.data or "digits", Path(args.out))[1]
    started = start_training(args, args.method or "dub", (dense_out,) if dense_out else ())
    if started is None:
        return 0
    overrides, out = started
    crossbar = {"rows": args.rows, "cols": args.cols, "cell_bits": args.cell_bits, "dac_bits": args.dac_bits,
                "weight_bits": args.weight_bits, "input_bits": args.input_bits,
                "per_channel": True if args.per_channel else None}
    if args.resume:
        checkpoint = runner.resume(args.resume, out, {"method": args.method, "data": args.data, "seed": args.seed,
                                                       **crossbar}, threads=args.threads, device=device_from(args))
    else:
        checkpoint = runner.prune(args.model, args.method, args.data or "digits", out, arch=args.arch,
                                  epochs=args.epochs, overrides=overrides, seed=args.seed or 0, crossbar=crossbar,
                                  threads=args.threads, device=device_from(args))
    if not main_replica():
        return 0                                    # torchrun: replica 0 reports
    meta = checkpoint["meta"]
    acc = meta["accuracy"]
    xbar = meta["crossbar"]
    levels = "  ".join(f"{k}:{v}" for k, v in meta["tile_levels"].items())
    print(f"{meta['method']} on {meta['dataset']}: accuracy {acc['dense_float']:.2f}% dense → "
          f"{acc['pruned_quantized']:.2f}% pruned ({checkpoint['weight_bits']}-bit weights)")
    print(f"sparsity {100 * meta['sparsity']:.1f}% of weights, {100 * meta['slice_sparsity']:.1f}% of cell digits; "
          f"mean lossless ADC bits {meta['mean_adc_bits']:.2f}")
    print(f"tiles per D.U.B. level (0 = densest): {levels}")
    print(f"wrote {out}; next: codesign analyze --model {out} --rows {xbar['rows']} --cols {xbar['cols']} "
          f"--cell-bits {xbar['cell_bits']} --dac-bits {xbar['dac_bits']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .prune import runner

    started = start_training(args, "dense")
    if started is None:
        return 0
    if not args.arch and not args.resume:
        raise_error("give the architecture to train, e.g. 'codesign train digits_cnn'")
    overrides, out = started
    if args.resume:
        checkpoint = runner.resume(args.resume, out, {"method": "dense", "arch": args.arch, "data": args.data,
                                                       "seed": args.seed, "weight_bits": args.weight_bits,
                                                       "input_bits": args.input_bits}, threads=args.threads,
                                    device=device_from(args))
    else:
        checkpoint = runner.train_dense(args.arch, args.data or "digits", out, epochs=args.epochs, seed=args.seed or 0,
                                        overrides=overrides, weight_bits=args.weight_bits or 8,
                                        input_bits=args.input_bits or 8, threads=args.threads,
                                        device=device_from(args))
    if not main_replica():
        return 0
    acc = checkpoint["meta"]["accuracy"]
    print(f"{checkpoint['arch']['name']} on {checkpoint['meta']['dataset']}: test accuracy {acc['float']:.2f}% "
          f"(float), {acc['quantized']:.2f}% with {checkpoint['weight_bits']}-bit weights")
    print(f"wrote {out}; next: codesign prune --model {out} --method dub --out pruned.pt")
    return 0


# --- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(
        prog="codesign",
        description="Crossbar accelerator co-design: per-column ADC resolution, periphery RTL, verification, reports.")
    parser.add_argument("--version", action="version", version=f"codesign {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        return sub

    analyze = command("analyze", cmd_analyze, "map a model onto crossbars and print per-layer ADC statistics")
    add_model_args(analyze)
    add_crossbar_args(analyze)
    analyze.add_argument("--json", action="store_true", help="print the HardwareConfig (hw_config.json) to stdout")

    generate = command("generate", cmd_generate,
                       "write hw_config.json, RTL parameter files, the periphery RTL and a summary "
                       "into an output folder")
    add_model_args(generate)
    add_crossbar_args(generate)
    generate.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out)")
    generate.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    generate.add_argument("--no-report", action="store_true", help="do not write report/ (see 'codesign report')")

    report = command("report", cmd_report,
                     "write DIR/report/: area, energy and latency of four ADC designs under five ADC models, "
                     "with sources (report.html, report.md, summary.json)")
    report.add_argument("dir", metavar="DIR", help="output folder of 'codesign generate' (holds hw_config.json)")
    report.add_argument("--adc-model", choices=("isaac", "walden", "murmann", "zigzag", "neurosim-sar"),
                        help="ADC model of the headline figures (default isaac; the band shows all)")
    report.add_argument("--tech-nm", type=number(), metavar="NM", help="technology node in nm (default 32, ISAAC's)")
    report.add_argument("--sample-rate", type=number(), metavar="HZ",
                        help="conversions per second of one ADC (default 1.2e9, ISAAC's)")
    report.add_argument("--walden-fom", type=number(), metavar="FJ",
                        help="Walden FOM in fJ per conversion step at 32 nm (default ISAAC-implied 6.51)")
    report.add_argument("--calibrated", metavar="FILE", nargs="+", action="extend",
                        help="calibrated hw_config.json files with the same tiles (repeatable; e.g. the files of "
                             "'codesign calibrate --budgets'): the first is the per-column calibrated design, all "
                             "are plotted as accuracy against ADC energy")
    report.add_argument("--data", metavar="SPEC",
                        help="measure the accuracies (float, ideal, crossbar, calibrated) on this dataset's test "
                             "split by whole-model emulation; needs a model file that carries its architecture")
    report.add_argument("--no-synth", action="store_true",
                        help="skip Yosys synthesis of DIR/rtl/ (the report then says the periphery was not measured)")
    report.add_argument("--no-fpga", action="store_true",
                        help="skip the ECP5 place and route of DIR/rtl/ (about 2 minutes per fresh 128x128 "
                             "module; the report then has no fmax)")


    emulate = command("emulate", cmd_emulate,
                      "run one layer (integer .npy in/out) or the whole model (accuracy three ways) on the crossbars")
    add_model_args(emulate)
    add_crossbar_args(emulate)
    emulate.add_argument("--layer", metavar="NAME", help="layer (module name) to run on --inputs")
    emulate.add_argument("--group", type=integer(0), default=0, metavar="G", help="convolution group of --layer (default 0)")
    emulate.add_argument("--inputs", metavar="X.npy", help="integer activations [B, K], 0..2^a-1")
    emulate.add_argument("--out", metavar="Y.npy", help="where to write the int64 outputs [B, N]")
    emulate.add_argument("--force", action="store_true", help="replace an existing --out file")
    emulate.add_argument("--data", metavar="SPEC", help="whole-model accuracy on this dataset (e.g. digits)")
    emulate.add_argument("--split", default="test", choices=("train", "val", "test"),
                         help="split to measure on (default test); activation scales come from train")
    emulate.add_argument("--json", action="store_true", help="print the accuracy report as JSON")
    add_device_arg(emulate)
    add_nonideal_args(emulate)

    calibrate = command("calibrate", cmd_calibrate,
                        "choose per-column ADC bits and shifts below lossless within an accuracy budget")
    add_model_args(calibrate)
    add_crossbar_args(calibrate)
    calibrate.add_argument("--data", required=True, metavar="SPEC", help="dataset (e.g. digits)")
    budget = calibrate.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget", type=number(0), metavar="POINTS",
                        help="largest share of search images (percent) whose prediction may change; "
                             "bounds the accuracy drop in percentage points")
    budget.add_argument("--budgets", metavar="P1,P2,…",
                        help="several budgets, e.g. 0.25,0.5,1,2: one config each, OUT-stem-budget<P>.json "
                             "(for 'codesign report DIR --calibrated …', which plots accuracy against ADC energy)")
    calibrate.add_argument("--search-split", default="val", choices=("train", "val", "test"),
                           help="images the budget is enforced on (default val: held out from training, and "
                                "the test split stays untouched for the reported drop); statistics use train")
    calibrate.add_argument("--out", default="hw_config.json", metavar="FILE",
                           help="calibrated config to write (default hw_config.json); with --budgets, the name "
                                "its files are derived from")
    calibrate.add_argument("--force", action="store_true", help="replace an existing --out file")
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    add_device_arg(calibrate)

    simulate = command("simulate", cmd_simulate,
                       "run every tile's generated Verilog in Icarus or Verilator (cocotb) against the golden model; "
                       "writes DIR/sim/results.json")
    simulate.add_argument("dir", metavar="DIR", help="output folder of 'codesign generate'")
    simulate.add_argument("--sim", choices=("icarus", "verilator"), default="icarus",
                          help="simulator (default icarus; verilator builds for about 20 s, then runs several times faster)")
    simulate.add_argument("--vectors", type=integer(1), metavar="N",
                          help="input vectors per tile (default 8), before the corner vectors")
    simulate.add_argument("--no-corners", action="store_true",
                          help="leave out the corner vectors (per tile about two per logical column: every "
                               "result at its largest and smallest value)")
    simulate.add_argument("--tiles", action="append", metavar="SPEC",
                          help="only these tiles: LAYER, LAYER:I or LAYER:I-J, comma-separated or repeated "
                               "(default all)")
    simulate.add_argument("--mode", choices=("fast", "python"), default="fast",
                          help="fast: the analog side (column values from the driven wordlines, ADC answers) "
                               "modelled inside the simulator (default); python: by the cocotb testbench every "
                               "cycle (slower)")
    simulate.add_argument("--waves", action="store_true",
                          help="write waveforms: DIR/sim/waves/<module>.fst (Icarus) or .vcd (Verilator)")
    simulate.add_argument("--model", metavar="FILE",
                          help="the model file (default: the one named in DIR/hw_config.json, checked by sha256)")
    simulate.add_argument("--seed", type=SEED, default=0, help="seed of the input draw and back-pressure (default 0)")
    simulate.add_argument("--sample", type=integer(1), metavar="N",
                          help="a quick check: only N of the selected tiles, stratified (each layer's tile with the "
                               "most converted columns, then the most converted overall, then random per layer)")
    add_engine_args(simulate)

    explore = command("explore", cmd_explore,
                      "sweep crossbar sizes, cell and DAC bits, ADCs, ADC models and calibration budgets; write "
                      "the points, their Pareto front of energy, area and latency, and plots (DIR/explore.html)")
    add_model_args(explore)
    space = explore.add_argument_group("the space (comma-separated values; every combination is a point)")
    space.add_argument("--space", metavar="FILE", help="JSON object of the lists below (the options override it)")
    space.add_argument("--rows", metavar="R,…", help="wordlines per crossbar (default 128)")
    space.add_argument("--cols", metavar="C,…", help="physical columns per crossbar (default 128)")
    space.add_argument("--cell-bits", metavar="c,…", help="bits per cell (default 2)")
    space.add_argument("--dac-bits", metavar="v,…", help="input bits per cycle (default 1)")
    space.add_argument("--adcs", metavar="N,…", help="ADCs per crossbar (default one per 128 columns)")
    space.add_argument("--adc-model", metavar="NAME,…",
                       help="isaac (default), walden, murmann, zigzag, neurosim-sar")
    space.add_argument("--budgets", metavar="P,…",
                       help="calibration budgets in points (needs --data): a calibrated design per budget")
    space.add_argument("--data", metavar="SPEC", help="dataset of the calibrations (e.g. digits)")
    space.add_argument("--search-split", choices=("train", "val", "test"),
                       help="split the budgets hold on (default val)")
    add_periphery_args(explore)
    explore.add_argument("--out", default="explore", metavar="DIR",
                         help="output folder (default explore); points already in DIR/points.jsonl are reused")
    explore.add_argument("--force", action="store_true", help="discard the points of an earlier run in --out")
    add_engine_args(explore)

    command("schema", cmd_schema, "print the JSON Schema of hw_config.json")

    prune = command("prune", cmd_prune,
                    "prune and quantize a dense model for crossbars (D.U.B., TinyADC, crossbar/column, CRIMP, "
                    "bit-slice L1, magnitude) and write a codesign checkpoint")
    prune.add_argument("--method", choices=PRUNE_METHODS, help="pruning method (README, 'codesign prune')")
    model = prune.add_argument_group("model")
    model.add_argument("--model", metavar="FILE|ARCH",
                       help="dense codesign checkpoint, state_dict (with --arch), or a zoo architecture to train "
                            "first (default: digits_cnn for --data digits)")
    model.add_argument("--arch", metavar="NAME", help="zoo architecture of a plain state_dict given as --model")
    model.add_argument("--weight-bits", type=integer(config="LayerConfig.weight_bits"), metavar="WB",
                       help="two's-complement weight bits (default 8)")
    model.add_argument("--input-bits", type=integer(config="LayerConfig.input_bits"), metavar="A",
                       help="unsigned activation bits (default 8)")
    model.add_argument("--per-channel", action="store_true", help="one quantization scale per output channel")
    xbar = prune.add_argument_group("crossbar (docs/design.md §3; tiles during pruning are exactly these)")
    add_geometry_args(xbar)
    add_training_args(prune, "prune")

    train = command("train", cmd_train, "train a zoo architecture from random init into a dense codesign checkpoint")
    train.usage = ("codesign train ARCH --out FILE [--data SPEC] [options]\n"
                   "       codesign train --resume FILE --out FILE")
    train.add_argument("arch", nargs="?", metavar="ARCH",
                       help="digits_cnn, vgg8, vgg11_cifar, resnet20 or resnet18 (codesign.zoo); required, "
                            "except with --resume (the resumed run names it)")
    train.add_argument("--weight-bits", type=integer(config="LayerConfig.weight_bits"), metavar="WB",
                       help="weight bits recorded in the checkpoint (default 8)")
    train.add_argument("--input-bits", type=integer(config="LayerConfig.input_bits"), metavar="A",
                       help="activation bits recorded (default 8)")
    add_training_args(train, "train")
    return parser


def main(argv: list[str] | None = None) -> int:
    import signal

    from .errors import CodesignError, Terminated, one_line

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:                     # --help, --version, or a refused option
        return exc.code if isinstance(exc.code, int) else 1

    terminated = []                               # SIGTERM seen (a library may re-raise it as Ctrl-C)

    def terminate(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)   # SIGTERM cleans up as Ctrl-C does
    except ValueError:                                        # not the main thread: leave signals alone
        previous = None
    try:
        return args.func(args) or 0
    except CodesignError as exc:
        print(f"codesign: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated) or terminated:
            print("codesign: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("codesign: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("codesign: error: not enough memory for this input (is a tensor or option far larger than "
              "intended?)", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"codesign: error: {one_line(exc.strerror or str(exc))}{one_line(str(where))}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line unless --debug
        if args.debug:
            raise
        print(f"codesign: internal error: {type(exc).__name__}: {one_line(str(exc))} "
              f"(rerun with --debug for the traceback and please report it)", file=sys.stderr)
        return 3
    finally:
        from .tools import end_process_groups

        end_process_groups()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
