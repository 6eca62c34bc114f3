"""Fuzzing every command with malformed input (hypothesis).

Generated cases: model files (truncated, bit-flipped, crafted zip entries and pickles, odd dtypes,
shapes and tensor kinds, other formats), configs (JSON-level and text-level mutations), option
values of every command, corrupted output folders given to ``simulate`` and ``report``, and
hostile output locations. Each case runs the CLI (``codesign.cli.main``) in a worker process under
a memory limit (:data:`MEMORY_LIMIT`), in a fresh folder of its own, and must end in one of
two ways:

- exit 1 with exactly one ``codesign: error:`` line, no traceback, and every file of the case
  folder exactly as before (nothing left, nothing deleted);
- exit 0 with a correct result (``analyze --json``: a config that fits the model and holds the
  lossless bits an independent oracle computes; ``generate``: a complete folder whose manifest
  lists what was written) and no file outside the output location changed.

Anything else (exit 3, a traceback, a hang, a dead worker, a touched file) is a failure with its
reproducer. Failures are collected, not raised one by one, so every class is counted; the counts
go to ``$CODESIGN_FUZZ_STATS`` (JSON) when set (``python -m bench fuzz`` makes the robustness table
of bench/results.md from them). A few cases also run as real subprocesses (``python -m codesign``).
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import resource
import select
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

#: Data-size limit of the worker (RLIMIT_DATA: heap and private writable mappings; not RLIMIT_AS,
#: which would also count the large PROT_NONE reservations of Amaranth's WebAssembly Yosys).
MEMORY_LIMIT = 3 * 2**30
#: Longest a single case may take.
CASE_TIMEOUT = 120.0
#: Generated cases per class: about 2,100 in all, fewer where a case runs a whole command on a
#: folder (measured 2026-12-04: options 0.02 s, outputs 0.1 s, folders — a simulation — 0.6 s
#: each) so the suite keeps a margin below its 3 minutes.
EXAMPLES = {
    "model-truncated": 200, "model-bitflip": 240, "model-zip": 220, "model-pickle": 300, "model-tensors": 240,
    "model-other": 150, "config-json": 420, "config-text": 150, "options": 160, "folders": 20, "outputs": 45,
}
#: Multiplies every class's number of cases (for a quick look, or a longer run).
SCALE = float(os.environ.get("CODESIGN_FUZZ_SCALE", "1"))
REPRODUCERS = "CODESIGN_FUZZ_FAILURES"          #: folder to copy the inputs of failing cases into
STATS = "CODESIGN_FUZZ_STATS"                   #: file to write the counts to (JSON)

HOSTILE = ["a\n`include \"x\"", "*/ #error x /*", "q\"\\", "l\u2028s", "\x00\x1b[2J", "é" * 40, "", ".", "#1",
           "features.0", "fc", "conv"]
EDGE_INTS = [0, 1, -1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 127, 128, 129, 4096, 4097, 2**31, 2**63, 2**64, -2**63]
NUMBER_TEXT = ["0", "1", "-1", "2", "8", "16", "17", "64", "128", "4096", "4097", "99999999999999999999", "1.5",
               "1e3", "nan", "inf", "-inf", "-0", "0x10", " 8", "8 ", "", "٣", "1_000", "+4", "abc", "\n", "0.0"]


# --- the worker: runs cases in process, under a memory limit --------------------------------------

def worker_main(fd: int) -> None:
    """Loop of the worker process: a JSON request per line on stdin, a JSON reply per line on ``fd``."""
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    import contextlib

    from codesign.cli import main

    reply = os.fdopen(fd, "w")
    for line in sys.stdin:
        request = json.loads(line)
        os.chdir(request["cwd"])
        out, err = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        crash = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(request["argv"])
            except BaseException as exc:  # noqa: BLE001 - main must not raise; report what did
                code, crash = None, f"{type(exc).__name__}: {exc}"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        reply.write(json.dumps({"code": code, "stdout": out.getvalue()[-2**24:], "stderr": err.getvalue()[-20_000:],
                                "crash": crash, "seconds": time.perf_counter() - start, "peak_rss_mib": rss}) + "\n")
        reply.flush()


class Worker:
    """A worker process; restarted when it dies or hangs."""

    def __init__(self) -> None:
        self.proc = None
        self.started = 0

    def start(self) -> None:
        read, write = os.pipe()
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(write)], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                                     pass_fds=(write,), start_new_session=True,
                                     env=dict(os.environ, AMARANTH_USE_YOSYS="builtin"))
        os.close(write)
        self.replies = os.fdopen(read)
        self.started += 1

    def run(self, argv: list[str], cwd: Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.replies], [], [], CASE_TIMEOUT)
        line = self.replies.readline() if ready else ""
        if line:
            return json.loads(line)
        status = "hang" if not ready else f"worker died (status {self.proc.poll()})"
        self.stop()
        return {"code": None, "stdout": "", "stderr": "", "crash": status, "seconds": CASE_TIMEOUT, "peak_rss_mib": 0}

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.replies.close()
            self.proc = None


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker_main(int(sys.argv[2]))
    raise SystemExit(0)

from hypothesis import HealthCheck, given, settings  # noqa: E402 - the worker above needs none of this
from hypothesis import strategies as st  # noqa: E402


def fuzz_settings(kind: str):
    """Deterministic cases (the same in every run), no example database, no deadline."""
    return settings(max_examples=max(1, round(EXAMPLES[kind] * SCALE)), deadline=None, derandomize=True,
                    database=None, suppress_health_check=list(HealthCheck))


# --- cases, checks and the record of outcomes ---------------------------------------------------

def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder below ``folder``: relative path → (kind, size, content hash)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir",)
        else:
            data = path.read_bytes()
            found[rel] = ("file", len(data), hash(data))
    return found


class Fuzz:
    """Runs cases, checks them, counts them per class and keeps the failures."""

    def __init__(self, root: Path, bases: dict) -> None:
        self.root, self.bases = root, bases
        self.worker = Worker()
        self.count = 0
        self.stats: dict[str, dict] = {}
        self.failures: list[str] = []
        self.slowest: list[tuple] = []

    def case_dir(self) -> Path:
        self.count += 1
        folder = self.root / f"case{self.count}"
        folder.mkdir()
        return folder

    def run(self, kind: str, argv: list[str], case: Path, description: str, out: str | None = None,
            check_success=None) -> dict:
        """Run ``argv`` in ``case`` and check it; ``out`` is the output location (relative to ``case``)
        that may change on success; ``check_success(case, result)`` returns a problem or None."""
        before = snapshot(case)
        result = self.worker.run(argv, case)
        after = snapshot(case)
        if argv[0] == "simulate" and out:           # simulate's working area, even when it then fails
            after = {k: v for k, v in after.items() if not (k.startswith(f"{out}/sim") or k == f"{out}/.codesign.json")}
            before = {k: v for k, v in before.items() if not (k.startswith(f"{out}/sim") or k == f"{out}/.codesign.json")}
        problem = self.judge(result, before, after, case, out, check_success)
        if (case / "CANARY").exists():
            problem = "a crafted pickle ran code (the canary file exists)"
        entry = self.stats.setdefault(kind, {"cases": 0, "refused": 0, "succeeded": 0, "internal_errors": 0,
                                             "other_failures": 0, "out_of_memory": 0, "seconds": 0.0,
                                             "peak_rss_mib": 0.0})
        entry["out_of_memory"] += "not enough memory" in result["stderr"]
        entry["cases"] += 1
        entry["seconds"] += result["seconds"]
        self.slowest = sorted(self.slowest + [(round(result["seconds"], 2), kind, argv)], reverse=True)[:12]
        entry["peak_rss_mib"] = max(entry["peak_rss_mib"], result["peak_rss_mib"])
        if problem is None:
            entry["refused" if result["code"] == 1 else "succeeded"] += 1
        else:
            internal = result["code"] == 3 or result["crash"] is not None or "Traceback" in result["stderr"]
            entry["internal_errors" if internal else "other_failures"] += 1
            self.failures.append(self.record(kind, argv, case, description, problem, result))
        shutil.rmtree(case, ignore_errors=True)
        return result

    def judge(self, result: dict, before: dict, after: dict, case: Path, out: str | None,
              check_success) -> str | None:
        err = result["stderr"]
        if result["crash"]:
            return f"main raised or the worker failed: {result['crash']}"
        if "Traceback" in err:
            return "a traceback"
        if result["code"] == 1 and "FAILED:" in result["stdout"] and "tiles ×" in result["stdout"]:
            return None                             # simulate ran, and the hardware disagreed: a verdict
        if result["code"] == 1:
            lines = [line for line in err.splitlines() if line.startswith("codesign: error:")]
            if len(lines) != 1:
                return f"exit 1 with {len(lines)} error lines"
            if after != before:
                changed = sorted(set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]})
                return f"refused but changed files: {changed[:5]}"
            return None
        if result["code"] != 0:
            return f"exit status {result['code']}: {err.strip().splitlines()[-1:] if err.strip() else ''}"
        inside_out = (lambda rel: rel == out or rel.startswith(out + "/")) if out else (lambda rel: False)
        parents = {str(p) for p in Path(out).parents} if out else set()     # created for the output
        touched = [k for k in set(before) | set(after) if not inside_out(k) and before.get(k) != after.get(k)
                   and not (k in parents and k not in before and after[k] == ("dir",))]
        if touched:
            return f"succeeded but changed files outside its output: {sorted(touched)[:5]}"
        return check_success(case, result) if check_success else None

    def record(self, kind: str, argv: list[str], case: Path, description: str, problem: str, result: dict) -> str:
        keep = os.environ.get(REPRODUCERS)
        where = ""
        if keep:
            target = Path(keep) / f"{kind}-{self.count}"
            shutil.copytree(case, target, symlinks=True, dirs_exist_ok=True)
            where = f" (inputs kept in {target})"
        last = [line for line in result["stderr"].splitlines() if line.strip()][-1:]
        return (f"{kind}: {description}: {problem}; argv {argv}; stderr: {last[0][:400] if last else ''}{where}")

    def write_stats(self) -> None:
        path = os.environ.get(STATS)
        if not path:
            return
        existing = json.loads(Path(path).read_text()) if Path(path).is_file() else {"classes": {}, "failures": []}
        existing["classes"].update(self.stats)
        existing["failures"] += self.failures
        existing["slowest"] = sorted(existing.get("slowest", []) + self.slowest, reverse=True)[:12]
        existing["memory_limit_gib"] = MEMORY_LIMIT / 2**30
        Path(path).write_text(json.dumps(existing, indent=2) + "\n")


# --- the bases every case starts from -------------------------------------------------------------

class Tiny:
    """A small network with a conv and a linear layer (9×4 and 16×3 matrices)."""

    @staticmethod
    def module():
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.fc = nn.Linear(16, 3)

            def forward(self, x):
                return self.fc(torch.relu(self.conv(x)).flatten(1)[:, :16])

        torch.manual_seed(0)
        net = Net()
        with torch.no_grad():
            for p in (net.conv.weight, net.fc.weight):
                p.copy_(torch.randint(-20, 21, p.shape) * 0.01)
        return net


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    import torch

    from codesign.cli import main

    root = tmp_path_factory.mktemp("fuzz")
    bases_dir = root / "bases"
    bases_dir.mkdir()
    net = Tiny.module()
    sd = {k: v for k, v in net.state_dict().items()}
    torch.save(sd, bases_dir / "sd.pt")
    torch.save(sd, bases_dir / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.jit.script(net).save(str(bases_dir / "ts.pt"))
    bundled = Path(__file__).parents[1] / "examples" / "digits_cnn_pruned.pt"
    shutil.copy(bundled, bases_dir / "ckpt.pt")
    argv = ["--model", str(bases_dir / "sd.pt"), "--rows", "8", "--cols", "16"]
    capture = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(capture), contextlib.redirect_stderr(io.StringIO()):
        assert main(["analyze", *argv, "--json"]) == 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["generate", *argv, "--out", str(bases_dir / "folder"), "--no-report"]) == 0
    (bases_dir / "config.json").write_text(capture.getvalue())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["simulate", str(bases_dir / "folder"), "--tiles", "fc:0", "--vectors", "1"]) == 0   # built once
    np.save(bases_dir / "x.npy", np.random.default_rng(0).integers(0, 256, (2, 16)))
    bases = {name: (bases_dir / name).read_bytes() for name in ("sd.pt", "legacy.pt", "ts.pt", "ckpt.pt",
                                                                "config.json", "x.npy")}
    bases["dir"] = bases_dir
    engine = Fuzz(root, bases)
    yield engine
    engine.worker.stop()
    engine.write_stats()


def put(case: Path, name: str, data: bytes) -> Path:
    path = case / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def common(fuzz: Fuzz, case: Path, model: bytes | None = None) -> None:
    """The tiny model, config and inputs, as inputs of a case."""
    put(case, "sd.pt", model if model is not None else fuzz.bases["sd.pt"])
    put(case, "config.json", fuzz.bases["config.json"])
    put(case, "x.npy", fuzz.bases["x.npy"])


# --- oracle of a successful analyze --json ---------------------------------------------------------

def lossless_oracle(q: np.ndarray, rows: int, cols: int, cell_bits: int, dac_bits: int, weight_bits: int,
                    tiles: list[dict]) -> list[list[int]]:
    """docs/design.md §3.10 written out independently: per tile and physical column p = (j·S + s)·2 + pol,
    b = bit_length((2^v − 1) · Σ_rows digit_s(max(±q, 0)))."""
    slices = -(-(weight_bits - 1) // cell_bits)
    result = []
    for tile in tiles:
        block = q[tile["row_start"]:tile["row_start"] + tile["row_count"],
                  tile["col_start"]:tile["col_start"] + tile["col_count"]].astype(np.int64)
        sums = np.zeros((block.shape[1], slices, 2), dtype=object)          # [j, s, pol]
        for s in range(slices):
            for pol, part in enumerate((np.maximum(block, 0), np.maximum(-block, 0))):
                sums[:, s, pol] = ((part >> (s * cell_bits)) & ((1 << cell_bits) - 1)).sum(axis=0)
        result.append([int(((1 << dac_bits) - 1) * int(total)).bit_length() for total in sums.reshape(-1)])
    return result


def analyze_json_is_correct(model_path: Path, argv: list[str]):
    def check(case: Path, result: dict) -> str | None:
        from codesign.config import check_against_model, parse_config
        from codesign.ingest import load_model

        try:
            config = parse_config(result["stdout"])
        except Exception as exc:  # noqa: BLE001
            return f"analyze --json printed no valid config: {exc}"
        layer_bits = {(layer.weight_bits, layer.input_bits) for layer in config.layers}
        wb, ab = layer_bits.pop() if layer_bits else (8, 8)
        model = load_model(str(case / model_path), weight_bits=wb, input_bits=ab, per_channel="--per-channel" in argv,
                           ignore_unsupported="--ignore-unsupported" in argv)
        check_against_model(config, model.layers)
        for layer in config.layers:
            xbar = layer.crossbar or config.crossbar
            want = lossless_oracle(model.layer(layer.key).q, xbar.rows, xbar.cols, xbar.cell_bits, xbar.dac_bits,
                                   layer.weight_bits, [t.model_dump() for t in layer.tiles])
            if want != [t.adc_bits for t in layer.tiles]:
                return f"layer '{layer.key}': adc_bits differ from the lossless oracle"
        return None

    return check


def folder_is_complete(out: str):
    def check(case: Path, result: dict) -> str | None:
        from codesign.config import load_config
        from codesign.files import read_manifest

        folder = case / out
        load_config(folder / "hw_config.json")
        manifest = read_manifest(folder)
        written = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {".codesign.json"}
        missing = sorted(f for f in manifest.files if not (folder / f).is_file())
        if missing:
            return f"the manifest lists missing files: {missing[:3]}"
        if not {"hw_config.json", "summary.json", "params/params.json", "rtl/manifest.json"} <= manifest.files:
            return "the folder is incomplete"
        unlisted = sorted(f for f in written if not manifest.owns(f) and "mine" not in f)
        return f"files written but not listed: {unlisted[:3]}" if unlisted else None

    return check


# --- model files ---------------------------------------------------------------------------------

MODEL_BASES = ["sd.pt", "legacy.pt", "ts.pt", "ckpt.pt"]
ANALYZE_EXTRAS = st.sampled_from([[], ["--json"], ["--json"], ["--per-channel", "--json"], ["--weight-bits", "4", "--json"],
                                  ["--ignore-unsupported", "--json"], ["--input-bits", "3", "--json"]])


def run_model_case(fuzz: Fuzz, kind: str, data: bytes, description: str, extra: list[str], name: str = "m.pt",
                   layer: bool = False) -> None:
    case = fuzz.case_dir()
    common(fuzz, case)
    put(case, name, data)
    if layer:
        argv = ["emulate", "--model", name, "--layer", "fc", "--inputs", "x.npy", "--out", "y.npy"]
        fuzz.run(kind, argv, case, description, out="y.npy")
        return
    size = ["--rows", "8", "--cols", "16"] if len(data) < 50_000 else []        # the bundled model: 128×128
    argv = ["analyze", "--model", name, *size, *extra]
    fuzz.run(kind, argv, case, description,
             check_success=analyze_json_is_correct(Path(name), argv) if "--json" in extra else None)


def test_truncated_model_files(fuzz):
    @fuzz_settings("model-truncated")
    @given(st.sampled_from(MODEL_BASES), st.floats(0, 1), ANALYZE_EXTRAS)
    def check(base, share, extra):
        data = fuzz.bases[base]
        cut = int(len(data) * share)
        run_model_case(fuzz, "model-truncated", data[:cut], f"{base} truncated to {cut} of {len(data)} bytes", extra)

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


def test_bit_flipped_model_files(fuzz):
    @fuzz_settings("model-bitflip")
    @given(st.sampled_from(MODEL_BASES), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                                                  min_size=1, max_size=8), ANALYZE_EXTRAS, st.booleans())
    def check(base, flips, extra, layer):
        data = bytearray(fuzz.bases[base])
        positions = [(int(share * len(data)), bit) for share, bit in flips]
        for position, bit in positions:
            data[position] ^= 1 << bit
        run_model_case(fuzz, "model-bitflip", bytes(data), f"{base} with bits flipped at {positions}", extra,
                       layer=layer and base != "ckpt.pt")

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


def zip_entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def make_zip(entries: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return buffer.getvalue()


ZIP_OPS = st.sampled_from(["drop", "rename", "random", "truncate", "duplicate", "add", "empty", "deflate", "swap"])


def test_crafted_zip_entries(fuzz):
    @fuzz_settings("model-zip")
    @given(st.sampled_from(["sd.pt", "ts.pt", "ckpt.pt"]), st.data())
    def check(base, data):
        entries = zip_entries(fuzz.bases[base])
        ops = data.draw(st.lists(ZIP_OPS, min_size=1, max_size=3))
        compression = zipfile.ZIP_STORED
        steps = []
        for op in ops:
            index = data.draw(st.integers(0, len(entries) - 1)) if entries else 0
            name = entries[index][0] if entries else "archive/data.pkl"
            if op == "drop" and entries:
                entries.pop(index)
            elif op == "rename" and entries:
                new = data.draw(st.sampled_from(["../evil", "/abs/data.pkl", "archive/data/999", "archive/Data.pkl",
                                                 "other/data.pkl", name + "x", "archive/data.pkl", ""]))
                entries[index] = (new or "x", entries[index][1])
            elif op == "random" and entries:
                entries[index] = (name, data.draw(st.binary(max_size=256)))
            elif op == "truncate" and entries:
                content = entries[index][1]
                entries[index] = (name, content[:data.draw(st.integers(0, max(len(content) - 1, 0)))])
            elif op == "duplicate" and entries:
                entries.append(entries[index])
            elif op == "add":
                entries.append((data.draw(st.sampled_from(["archive/data/1", "archive/extra", "archive/version",
                                                           "archive/data.pkl", "archive/byteorder"])),
                                data.draw(st.sampled_from([b"", b"3\n", b"big", b"\x80\x02}q\x00.", b"\x00" * 64]))))
            elif op == "empty":
                entries = []
            elif op == "deflate":
                compression = zipfile.ZIP_DEFLATED
            elif op == "swap" and len(entries) > 1:
                other = data.draw(st.integers(0, len(entries) - 1))
                entries[index], entries[other] = (entries[index][0], entries[other][1]), (entries[other][0],
                                                                                          entries[index][1])
            steps.append(f"{op}({name})")
        run_model_case(fuzz, "model-zip", make_zip(entries, compression), f"{base} zip entries: {', '.join(steps)}",
                       data.draw(ANALYZE_EXTRAS))

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


PICKLE_FRAGMENTS = [
    b"}", b"]", b"(", b"t", b")", b"R", b"b", b"u", b"e", b"a", b"s", b"0", b"1", b"2", b"N", b"\x88", b"\x89",
    b"K\x05", b"J\xff\xff\xff\x7f", b"J\x00\x00\x00\x80", b"\x8a\x09" + b"\xff" * 9, b"G" + struct.pack(">d", math.nan),
    b"X\x0b\x00\x00\x00conv.weight", b"X\x09\x00\x00\x00fc.weight", b"X\x07\x00\x00\x00storage", b"X\x01\x00\x00\x000",
    b"X\x03\x00\x00\x00cpu", b"X\xff\xff\xff\x7f", b"cbuiltins\neval\n", b"cposix\nsystem\n", b"cos\nsystem\n",
    b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch._utils\n_rebuild_parameter\n", b"ccollections\nOrderedDict\n",
    b"ctorch\nFloatStorage\n", b"ctorch\nHalfStorage\n", b"ctorch\nLongStorage\n", b"ctorch\nBoolStorage\n",
    b"c__builtin__\nset\n", b"ctorch\nSize\n", b"ctorch\nfloat32\n", b"Q", b"h\x00", b"h\x63", b"q\x00", b"\x80\x02",
    b"\x95" + b"\xff" * 8, b"\x93", b"\x94", b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
    b"X\x03\x00\x00\x00cpuK\x10tQ", b"K\x00(K\x04K\x04t(K\x00K\x00t\x89ccollections\nOrderedDict\n)R",
]
CANARY_PICKLE = b"\x80\x02cposix\nsystem\nX\x0c\x00\x00\x00touch CANARY\x85R."


def rebuilt_tensor_pickle(storage: str, key: str, numel: int, offset: int, size: tuple, stride: tuple) -> bytes:
    """A state_dict pickle whose one tensor is rebuilt from the given storage, offset, size and stride."""

    class Storage:
        pass

    class Rebuild:
        def __reduce__(self):
            import torch

            return (torch._utils._rebuild_tensor_v2, (Storage(), offset, size, stride, False, {}))

    import torch

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", getattr(torch, storage), key, "cpu", numel)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"fc.weight": Rebuild()})
    return buffer.getvalue()


def test_crafted_pickles(fuzz):
    @fuzz_settings("model-pickle")
    @given(st.data())
    def check(data):
        entries = zip_entries(fuzz.bases["sd.pt"])
        style = data.draw(st.sampled_from(["fragments", "dict", "canary", "tensor", "tensor"]))
        if style == "canary":
            program, description = CANARY_PICKLE, "a pickle calling os.system"
        elif style == "tensor":
            storage = data.draw(st.sampled_from(["FloatStorage", "HalfStorage", "LongStorage", "BoolStorage",
                                                 "ByteStorage", "DoubleStorage", "ComplexFloatStorage", "BFloat16Storage"]))
            dims = data.draw(st.integers(0, 4))
            size = tuple(data.draw(st.lists(st.sampled_from([0, 1, 2, 3, 16, 1000, 10**5, 2**31, 2**40]),
                                            min_size=dims, max_size=dims)))
            stride = tuple(data.draw(st.lists(st.sampled_from([0, 1, 2, 16, -1, 2**40]), min_size=dims, max_size=dims)))
            numel = data.draw(st.sampled_from([0, 1, 3, 48, 10**6, 2**40]))
            offset = data.draw(st.sampled_from([0, 1, 47, 10**9, -1]))
            content = data.draw(st.sampled_from([0, 4, 192, 1000]))
            key = data.draw(st.sampled_from(["0", "1", "../0", "x"]))
            program = rebuilt_tensor_pickle(storage, key, numel, offset, size, stride)
            entries = [(n, c) for n, c in entries if "/data/" not in n] + [("sd/data/" + key, b"\x01" * content)]
            description = (f"a tensor from {storage} key {key} numel {numel} ({content} bytes stored), offset {offset}, "
                           f"size {size}, stride {stride}")
        else:
            body = b"".join(data.draw(st.lists(st.sampled_from(PICKLE_FRAGMENTS), min_size=1, max_size=12)))
            program = (b"\x80\x02}(X\x0b\x00\x00\x00conv.weight" + body + b"u." if style == "dict"
                       else b"\x80\x02" + body + b".")
            description = f"pickle {program!r}"
        entries = [(n, program if n.endswith("data.pkl") else c) for n, c in entries]
        run_model_case(fuzz, "model-pickle", make_zip(entries), description, data.draw(ANALYZE_EXTRAS))

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool",
          "complex64"]
TENSOR_KINDS = ["dense", "dense", "dense", "expanded", "sparse", "quantized", "meta", "nan", "huge", "noncontiguous",
                "parameter", "nested-dict", "not-a-tensor"]


def odd_state_dict(data) -> tuple[dict, str]:
    import torch

    entries, described = {}, []
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(["conv", "fc", "layer.0", "a\nb", "x" * 300, "", "#", "fc#1", "é"]
                                         + HOSTILE)) + data.draw(st.sampled_from([".weight", ".weight", ".bias", ""]))
        kind = data.draw(st.sampled_from(TENSOR_KINDS))
        dtype = getattr(torch, data.draw(st.sampled_from(DTYPES)))
        shape = tuple(data.draw(st.lists(st.integers(0, 6), min_size=0, max_size=5)))
        if kind == "expanded":
            shape = tuple(data.draw(st.lists(st.sampled_from([1, 3, 1000, 100_000]), min_size=2, max_size=3)))
            tensor = torch.ones((1,) * len(shape), dtype=torch.float32).expand(*shape)
        elif kind == "sparse":
            tensor = torch.eye(4).to_sparse()
        elif kind == "quantized":
            tensor = torch.quantize_per_tensor(torch.randn(3, 4), 0.1, 0, torch.qint8)
        elif kind == "meta":
            tensor = torch.empty(shape or (3, 4), device="meta")
        elif kind == "not-a-tensor":
            tensor = data.draw(st.sampled_from([3, "x", None, [1, 2], {"a": 1}, 2.5]))
        elif kind == "nested-dict":
            tensor = {"weight": torch.ones(3, 4)}
        else:
            base = torch.randn(shape) * data.draw(st.sampled_from([0.01, 1.0, 1e30, 1e-30]))
            if kind == "nan":
                base = base.flatten()
                if base.numel():
                    base[0] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
                base = base.reshape(shape)
            elif kind == "huge":
                base = torch.full(shape, 3e38)
            tensor = base.to(dtype) if dtype != torch.complex64 else torch.complex(base, base)
            if kind == "noncontiguous" and tensor.dim() >= 2:
                tensor = tensor.transpose(0, 1)
            if kind == "parameter" and tensor.is_floating_point():
                tensor = torch.nn.Parameter(tensor)
        entries[name] = tensor
        described.append(f"{name!r}: {kind} {getattr(tensor, 'dtype', type(tensor).__name__)} "
                         f"{list(getattr(tensor, 'shape', []))}")
    return entries, "; ".join(described)


def test_odd_tensors(fuzz):
    import torch

    @fuzz_settings("model-tensors")
    @given(st.data())
    def check(data):
        state, description = odd_state_dict(data)
        wrap = data.draw(st.sampled_from(["plain", "plain", "checkpoint", "state_dict-key"]))
        if wrap == "checkpoint":
            from codesign.checkpoint import FORMAT, VERSION

            state = {"format": FORMAT, "version": VERSION, "arch": data.draw(st.sampled_from(
                [{"name": "digits_cnn", "kwargs": {}}, {"name": "nope", "kwargs": {}}, {"name": "digits_cnn",
                 "kwargs": {"width": -1}}, "digits_cnn", None])), "state_dict": state,
                "weight_bits": data.draw(st.sampled_from([8, 4, 1, 0, 17, "8", 8.5, True, None])),
                "input_bits": data.draw(st.sampled_from([8, 0, 33, "x"])), "per_channel": data.draw(st.booleans()),
                "scales": data.draw(st.sampled_from([{}, {"fc": torch.ones(3)}, {"fc": "x"}, [], None])),
                "masks": {}, "meta": data.draw(st.sampled_from([{}, [], {"crossbar": {"rows": 0}}, None,
                                                               {"crossbar": "x"}]))}
            wrap += " " + ", ".join(f"{k}={state[k]!r}" for k in ("arch", "weight_bits", "input_bits", "meta"))
        elif wrap == "state_dict-key":
            state = {"state_dict": state, "epoch": 3}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        run_model_case(fuzz, "model-tensors", buffer.getvalue(), f"{wrap} of {description}", data.draw(ANALYZE_EXTRAS),
                       layer=data.draw(st.integers(0, 9)) == 0)

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


def test_other_formats(fuzz):
    @fuzz_settings("model-other")
    @given(st.data())
    def check(data):
        kind = data.draw(st.sampled_from(["random", "empty", "json", "npy", "folder", "gzip", "safetensors", "onnx",
                                          "pt2", "text", "zip-of-random", "deflate-bomb", "symlink-loop"]))
        name = data.draw(st.sampled_from(["m.pt", "m.pth", "m.npy", "m.onnx", "m.safetensors", "m.pt2", "m", "m.json"]))
        case = fuzz.case_dir()
        common(fuzz, case)
        if kind == "folder":
            (case / name).mkdir()
        elif kind == "symlink-loop":
            (case / name).symlink_to(case / name)
        else:
            content = {
                "random": lambda: data.draw(st.binary(min_size=1, max_size=4096)),
                "empty": lambda: b"",
                "json": lambda: fuzz.bases["config.json"],
                "npy": lambda: fuzz.bases["x.npy"],
                "gzip": lambda: b"\x1f\x8b\x08\x00" + data.draw(st.binary(max_size=64)),
                "safetensors": lambda: struct.pack("<Q", 2**60) + b'{"fc.weight":{"dtype":"F32"}}',
                "onnx": lambda: b"\x08\x07\x12\x07pytorch" + data.draw(st.binary(max_size=64)),
                "pt2": lambda: make_zip([("m/archive_format", b"pt2"), ("m/models/model.json", b"{}")]),
                "text": lambda: data.draw(st.text(max_size=200)).encode("utf-8", "surrogatepass"),
                "zip-of-random": lambda: make_zip([(data.draw(st.text(min_size=1, max_size=12)),
                                                   data.draw(st.binary(max_size=64)))]),
                "deflate-bomb": lambda: make_zip([("archive/data.pkl", b"\x00" * (50 * 2**20))], zipfile.ZIP_DEFLATED),
            }[kind]()
            put(case, name, content)
        argv = ["analyze", "--model", name, *data.draw(ANALYZE_EXTRAS)]
        fuzz.run("model-other", argv, case, f"{kind} file named {name}",
                 check_success=analyze_json_is_correct(Path(name), argv) if "--json" in argv else None)

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


# --- configs -------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.sampled_from(EDGE_INTS) | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(HOSTILE) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8)


def json_paths(value, prefix=()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += json_paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value[:6]):
            found += json_paths(child, prefix + (index,))
    return found


def mutate_json(data, document):
    """One mutation of a JSON document at a random place; returns it and a description."""
    paths = json_paths(document)
    path = data.draw(st.sampled_from(paths[1:] or paths))
    op = data.draw(st.sampled_from(["replace", "replace", "number", "delete", "add", "duplicate", "deep"]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    leaf = path[-1] if path else None
    if op == "number" or (op == "replace" and isinstance(parent[leaf], int)):
        parent[leaf] = data.draw(st.sampled_from(EDGE_INTS + [True, False, 3.0, "3", None, -0.0, 1e308]))
    elif op == "replace":
        parent[leaf] = data.draw(JSON_VALUES)
    elif op == "delete":
        del parent[leaf]
    elif op == "add":
        target = parent[leaf]
        if isinstance(target, dict):
            target[data.draw(st.sampled_from(["extra", "adcs", "name", "crossbar", "tiles"]))] = data.draw(JSON_VALUES)
        elif isinstance(target, list):
            target.append(data.draw(JSON_VALUES) if not target or data.draw(st.booleans()) else target[0])
        else:
            parent[leaf] = [target]
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(parent[leaf])
    elif op == "deep":
        deep = []
        for _ in range(data.draw(st.sampled_from([10, 100, 500]))):
            deep = [deep]
        parent[leaf] = deep
    return document, f"{op} at {list(path)}"


def config_case(fuzz: Fuzz, kind: str, text: bytes, description: str, data) -> None:
    case = fuzz.case_dir()
    common(fuzz, case)
    put(case, "c.json", text)
    command = data.draw(st.sampled_from(["analyze"] * 14 + ["emulate"] * 4 + ["generate"]))
    if command == "analyze":
        argv = ["analyze", "--model", "sd.pt", "--config", "c.json", *data.draw(st.sampled_from(
            [[], ["--json"], ["--allow-model-mismatch"]]))]
        fuzz.run(kind, argv, case, description)
    elif command == "emulate":
        argv = ["emulate", "--model", "sd.pt", "--config", "c.json", "--layer", data.draw(st.sampled_from(["fc", "conv"])),
                "--inputs", "x.npy", "--out", "y.npy"]
        fuzz.run(kind, argv, case, description, out="y.npy")
    else:
        argv = ["generate", "--model", "sd.pt", "--config", "c.json", "--out", "out", "--no-report"]
        fuzz.run(kind, argv, case, description, out="out", check_success=folder_is_complete("out"))


def test_mutated_configs(fuzz):
    @fuzz_settings("config-json")
    @given(st.data())
    def check(data):
        document = json.loads(fuzz.bases["config.json"])
        steps = []
        for _ in range(data.draw(st.integers(1, 3))):
            document, step = mutate_json(data, document)
            steps.append(step)
        text = json.dumps(document, allow_nan=True) if not isinstance(document, str) else document
        config_case(fuzz, "config-json", text.encode(), "; ".join(steps), data)

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


def test_corrupted_config_text(fuzz):
    @fuzz_settings("config-text")
    @given(st.data())
    def check(data):
        text = bytearray(fuzz.bases["config.json"])
        op = data.draw(st.sampled_from(["truncate", "flip", "bom", "bytes", "dupkey", "deep", "huge-number"]))
        if op == "truncate":
            text = text[:data.draw(st.integers(0, len(text) - 1))]
        elif op == "flip":
            for _ in range(data.draw(st.integers(1, 6))):
                position = data.draw(st.integers(0, len(text) - 1))
                text[position] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "bom":
            text = bytearray(b"\xef\xbb\xbf") + text
        elif op == "bytes":
            text = bytearray(data.draw(st.binary(max_size=512)))
        elif op == "dupkey":
            text = bytearray(text.replace(b'"crossbar": {', b'"crossbar": {"rows": 0, ', 1))
        elif op == "deep":
            depth = data.draw(st.sampled_from([500, 990, 5000, 200_000]))
            text = bytearray(b'{"layers": ' + b"[" * depth + b"]" * depth + b"}")
        else:
            text = bytearray(text.replace(b'"rows": 8', b'"rows": 1' + b"0" * data.draw(st.integers(10, 5000)), 1))
        config_case(fuzz, "config-text", bytes(text), f"config text {op}", data)

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


# --- option values of every command ---------------------------------------------------------------

NUMBERS = st.sampled_from(NUMBER_TEXT) | st.integers(-2**65, 2**65).map(str) | st.floats().map(repr)
PATHS = st.sampled_from(["sd.pt", "nowhere.pt", ".", "config.json", "x.npy", "folder", "", "a\nb", "/proc/x",
                         "y" * 300, "sd.pt/x"])
MODEL_OPTIONS = {"--model": PATHS, "--weight-bits": NUMBERS, "--input-bits": NUMBERS, "--per-channel": None,
                 "--ignore-unsupported": None}
CROSSBAR_OPTIONS = {"--rows": NUMBERS, "--cols": NUMBERS, "--cell-bits": NUMBERS, "--dac-bits": NUMBERS,
                    "--adcs": NUMBERS, "--search": st.sampled_from(["global", "layer", "x"]), "--config": PATHS,
                    "--allow-model-mismatch": None}
COMMANDS = {
    "analyze": ({**MODEL_OPTIONS, **CROSSBAR_OPTIONS, "--json": None}, []),
    "generate": ({**MODEL_OPTIONS, **CROSSBAR_OPTIONS, "--out": PATHS, "--force": None}, ["--no-report"]),
    "emulate": ({**MODEL_OPTIONS, **CROSSBAR_OPTIONS, "--layer": st.sampled_from(["fc", "conv", "nope", "", "fc#1"]),
                 "--group": NUMBERS, "--inputs": PATHS, "--out": PATHS, "--force": None,
                 "--data": st.sampled_from(["digits", "cifar10:/nowhere", "imagefolder:x.npy", "bogus", "digits:x"]),
                 "--split": st.sampled_from(["test", "val", "x"]), "--conductance-sigma": NUMBERS,
                 "--adc-noise": NUMBERS, "--seed": NUMBERS, "--json": None}, []),
    "calibrate": ({**MODEL_OPTIONS, **CROSSBAR_OPTIONS, "--budget": NUMBERS, "--out": PATHS, "--force": None,
                   "--search-split": st.sampled_from(["val", "x"]), "--json": None},
                  ["--data", "cifar10:/nowhere"]),
    "simulate": ({"--sim": st.sampled_from(["icarus", "verilator", "x"]), "--vectors": NUMBERS,
                  "--tiles": st.sampled_from(["fc:0", "fc:1-0", "conv:99", "nope", "", ":", "fc:-1", "fc:a-b",
                                              "fc,nope", "fc:99999999999999999999", "fc:0-", "fc::0"]),
                  "--mode": st.sampled_from(["fast", "python", "x"]), "--model": PATHS, "--seed": NUMBERS},
                 ["folder", "--tiles", "nope"]),
    "report": ({"--adc-model": st.sampled_from(["isaac", "walden", "x"]), "--tech-nm": NUMBERS,
                "--sample-rate": NUMBERS, "--walden-fom": NUMBERS, "--calibrated": PATHS},
               ["folder", "--no-synth"]),
    "prune": ({"--method": st.sampled_from(["dub", "tinyadc", "x"]), "--model": PATHS, "--arch": st.text(max_size=8),
               "--weight-bits": NUMBERS, "--rows": NUMBERS, "--cols": NUMBERS, "--data": st.sampled_from(
                   ["digits", "cifar10:/nowhere", "x"]), "--out": PATHS, "--epochs": NUMBERS, "--seed": NUMBERS,
               "--set": st.sampled_from(["lr=1", "train.epochs=-1", "a.b=2", "x", "=", "train=3", "train.lr=[[[[1]]]]",
                                         "train.lr=" + "[" * 2000]),
               "--hparams": PATHS, "--threads": NUMBERS}, ["--show-hparams"]),
    "train": ({"--weight-bits": NUMBERS, "--input-bits": NUMBERS, "--data": st.sampled_from(["digits", "x"]),
               "--out": PATHS, "--epochs": NUMBERS, "--seed": NUMBERS, "--threads": NUMBERS}, ["--show-hparams"]),
    "schema": ({}, []),
}


def test_option_values(fuzz):
    @fuzz_settings("options")
    @given(st.data())
    def check(data):
        command = data.draw(st.sampled_from(sorted(COMMANDS) + ["analyze", "emulate"] * 5))
        options, fixed = COMMANDS[command]
        chosen = data.draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)) if options else []
        argv = [command]
        if command in ("simulate", "report"):
            argv.append(fixed[0])
            fixed = fixed[1:]
            if command == "simulate" and "--tiles" in chosen:
                fixed = []                                  # the drawn tiles may select a real run
        for option in chosen:
            argv.append(option)
            if options[option] is not None:
                argv.append(data.draw(options[option]))
        argv += fixed
        if command == "emulate" and "--layer" not in chosen and "--data" not in chosen:
            argv += ["--layer", "fc", "--inputs", "x.npy", "--out", "y.npy"]
        if command in ("analyze", "generate", "emulate", "calibrate") and "--model" not in chosen:
            argv += ["--model", "sd.pt"]
        if command == "generate" and "--out" not in chosen:
            argv += ["--out", "out"]
        case = fuzz.case_dir()
        common(fuzz, case)
        if command in ("simulate", "report") or "folder" in argv:
            shutil.copytree(fuzz.bases["dir"] / "folder", case / "folder")
        out = None
        if command in ("generate", "emulate", "calibrate") and "--out" in argv:
            last = len(argv) - 1 - argv[::-1].index("--out")           # argparse keeps the last one
            out = argv[last + 1] if last + 1 < len(argv) else None
        if command in ("emulate",) and out is None:
            out = "y.npy"
        if command in ("simulate", "report"):
            out = "folder"
        check = folder_is_complete(out) if command == "generate" and out not in (None, "", ".") else None
        fuzz.run("options", argv, case, f"options of {command}", out=out or None, check_success=check)

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


# --- corrupted folders given to simulate and report ---------------------------------------------

#: The files each command reads from a folder (a change elsewhere would only make a slow success).
FOLDER_TARGETS = {"simulate": ["hw_config.json", "rtl/manifest.json", "rtl/PORTS", "params/MEM", ".codesign.json",
                               "rtl/VERILOG"],
                  "report": ["hw_config.json", "search.json", ".codesign.json"]}


def test_corrupted_folders(fuzz):
    @fuzz_settings("folders")
    @given(st.data())
    def check(data):
        case = fuzz.case_dir()
        common(fuzz, case)
        folder = case / "folder"
        shutil.copytree(fuzz.bases["dir"] / "folder", folder)
        point = {"rows": 8, "cols": 16, "tiles": 8, "energy_pj": 1.5, "area_um2": 2.5, "objective": 2.0}
        (folder / "search.json").write_text(json.dumps({"global": [point], "best": point, "objective": "J",
                                                        "layers": {"fc": [point]}, "best_per_layer": {"fc": point}}))
        command = data.draw(st.sampled_from(["simulate", "simulate", "simulate", "report"]))
        target = data.draw(st.sampled_from(FOLDER_TARGETS[command]))
        if target == "rtl/PORTS":
            target = str(next(p for p in sorted((folder / "rtl").glob("*.json")) if p.name != "manifest.json")
                         .relative_to(folder))
        elif target == "rtl/VERILOG":
            target = str(next((folder / "rtl").glob("*.v")).relative_to(folder))
        elif target == "params/MEM":
            target = str(sorted((folder / "params").rglob("*.mem"))[0].relative_to(folder))
        path = folder / target
        op = data.draw(st.sampled_from(["json", "json", "truncate", "flip", "delete", "folder", "link-outside"]))
        if op == "json" and target.endswith(".json"):
            document, step = mutate_json(data, json.loads(path.read_text()))
            path.write_text(json.dumps(document))
            op = f"json {step}"
        elif op == "truncate" or op == "json":
            content = path.read_bytes()
            path.write_bytes(content[:data.draw(st.integers(0, max(len(content) - 1, 0)))])
        elif op == "flip":
            content = bytearray(path.read_bytes())
            for _ in range(data.draw(st.integers(1, 4))):
                position = data.draw(st.integers(0, len(content) - 1))
                content[position] ^= 1 << data.draw(st.integers(0, 7))
            path.write_bytes(bytes(content))
        elif op == "delete":
            path.unlink()
        elif op == "folder":
            path.unlink()
            path.mkdir()
        else:
            secret = case / "secret.txt"
            secret.write_text("SECRET\n")
            path.unlink()
            path.symlink_to(secret)
        argv = (["simulate", "folder", "--tiles", "fc:0", "--vectors", "1", "--model", "sd.pt"] if command == "simulate"
                else ["report", "folder", "--no-synth"])
        result = fuzz.run("folders", argv, case, f"{target}: {op}", out="folder")
        if "SECRET" in result["stderr"] + result["stdout"]:
            fuzz.failures.append(f"folders: {target}: {op}: the content of a file outside the folder was shown")

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


# --- output locations ------------------------------------------------------------------------------

def test_output_locations(fuzz):
    @fuzz_settings("outputs")
    @given(st.data())
    def check(data):
        case = fuzz.case_dir()
        common(fuzz, case)
        where = data.draw(st.sampled_from(["new", "nested-new", "file", "through-file", "foreign", "codesign",
                                           "codesign+foreign", "contains-model", "is-model", "proc", "long", "newline",
                                           "dot", "link-to-foreign", "tampered-manifest", "stale-stage"]))
        force = data.draw(st.booleans())
        out = {"nested-new": "a/b/out", "file": "file.txt", "through-file": "file.txt/out", "proc": "/proc/out",
               "long": "l" * 300, "newline": "o\nut", "dot": ".", "is-model": "sd.pt"}.get(where, "out")
        (case / "file.txt").write_text("user's file\n")
        if where in ("foreign", "codesign+foreign", "link-to-foreign"):
            (case / "theirs").mkdir()
            (case / "theirs" / "mine.txt").write_text("user's\n")
        if where in ("codesign", "codesign+foreign", "tampered-manifest", "stale-stage"):
            shutil.copytree(fuzz.bases["dir"] / "folder", case / "out")
        if where == "foreign":
            shutil.move(case / "theirs", case / "out")
        if where == "codesign+foreign":
            shutil.copy(case / "theirs" / "mine.txt", case / "out" / "mine.txt")
            (case / "out" / "params" / "mine.vh").write_text("user's\n")
        if where == "link-to-foreign":
            (case / "out").symlink_to(case / "theirs")
        if where == "contains-model":
            shutil.copy(case / "sd.pt", case / "out.pt")
            (case / "out").mkdir()
            shutil.move(case / "out.pt", case / "out" / "sd.pt")
        if where == "tampered-manifest":
            (case / "out" / ".codesign.json").write_text(json.dumps(
                {"schema": "codesign-written/1", "files": ["../file.txt", "hw_config.json"], "trees": []}))
        if where == "stale-stage":
            (case / "out" / ".codesign-stage-999999999" / "params").mkdir(parents=True)
        model = "out/sd.pt" if where == "contains-model" else "sd.pt"
        command = data.draw(st.sampled_from(["generate", "generate", "emulate", "calibrate"]))
        if command == "generate":
            argv = ["generate", "--model", model, "--rows", "8", "--cols", "16", "--no-report", "--out", out]
        elif command == "emulate":
            argv = ["emulate", "--model", model, "--layer", "fc", "--inputs", "x.npy", "--out", out]
        else:
            argv = ["calibrate", "--model", model, "--data", "cifar10:/nowhere", "--budget", "1", "--out", out]
        argv += ["--force"] if force else []
        check = folder_is_complete(out) if command == "generate" and out != "." else None
        fuzz.run("outputs", argv, case, f"{command} --out {where}{' --force' if force else ''}",
                 out=None if out == "." else out, check_success=check if out != "." else
                 (lambda c, r: None if (c / "hw_config.json").is_file() else "no hw_config.json"))

    start = len(fuzz.failures)
    check()
    assert not fuzz.failures[start:], "\n".join(fuzz.failures[start:])


# --- a few cases as real processes: exit status, no traceback ------------------------------------

@pytest.mark.parametrize("argv", [
    ["analyze", "--model", "m.pt"], ["analyze", "--rows", "0"], ["generate", "--config", "deep.json"],
    ["simulate", "nowhere"],
])
def test_bad_input_in_a_real_process(argv, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (tmp_path / "deep.json").write_text("[" * 100_000)
    done = subprocess.run([sys.executable, "-m", "codesign", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("codesign: error:")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.json", "m.pt"]
