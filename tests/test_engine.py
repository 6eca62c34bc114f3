"""The execution engine: inline, process pool and a real local Ray give the same results; a
failing item is reported with its input while the others complete."""

import operator

import pytest

from codesign.engine import engine
from codesign.errors import CodesignError

ITEMS = [1, 2, 3, 0, 4, 6, 8, 0, 12]
#: 12 / item, written out (not computed by the code under test).
EXPECTED = {0: 12.0, 1: 6.0, 2: 4.0, 4: 3.0, 5: 2.0, 6: 1.5, 8: 1.0}


def run(backend: str, workers: int = 2) -> tuple[dict, dict]:
    values, errors = {}, {}
    for outcome in engine(workers, backend=backend).map(operator.truediv, ITEMS, shared=12.0, progress=False):
        assert outcome.item == ITEMS[outcome.index]
        if outcome.ok:
            values[outcome.index] = outcome.value
        else:
            errors[outcome.index] = outcome.error
    return values, errors


@pytest.mark.parametrize("backend", ["inline", "pool", "ray"])
def test_every_backend_gives_the_same_results_and_reports_the_failing_items(backend):
    values, errors = run(backend, 1 if backend == "inline" else 2)
    assert values == EXPECTED
    assert sorted(errors) == [3, 7]
    assert all(error.startswith("ZeroDivisionError: float division by zero") for error in errors.values())


def test_a_local_ray_is_started_and_shut_down_and_leaves_the_signal_handlers_alone():
    """ray.init installs its own SIGTERM handler and a C-level one that dies by the signal: codesign's
    clean-up on Ctrl-C and SIGTERM (the simulators ended, exit 130 / 143) would never run."""
    import signal

    import ray

    def mine(signum, frame):
        raise AssertionError("not called")

    chosen = engine(2)
    assert chosen.backend == "ray" and chosen.local
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert run("ray") == run("pool")
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not ray.is_initialized()


def test_one_worker_runs_inline_and_the_choice_is_logged():
    assert engine(1).backend == "inline"
    assert engine(1).describe() == "1 worker (in this process)"
    assert engine(3, backend="pool").describe().startswith("3 workers (local process pool")


def test_bad_worker_counts_are_one_line_errors():
    with pytest.raises(CodesignError, match=r"^--workers must be at least 1, not 0$"):
        engine(0)


def test_a_cluster_that_is_not_there_is_a_one_line_error():
    with pytest.raises(CodesignError, match=r"^cannot reach the Ray cluster at 127.0.0.1:1: "
                                           r"Connection refused; .* or run without --ray$"):
        engine(2, address="127.0.0.1:1")
    with pytest.raises(CodesignError, match=r"give HOST:PORT"):
        engine(2, address="headnode")


class NotesLoads:
    """A shared value that appends this process's id to the file ``log`` each time it is unpickled."""

    def __init__(self, log: str) -> None:
        self.log = log

    def __reduce__(self):
        return _loaded, (self.log,)


def _loaded(log: str) -> NotesLoads:
    import os

    with open(log, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    return NotesLoads(log)


def _worker_pid(shared: NotesLoads, item: int) -> int:
    import os

    return os.getpid()


def test_ray_workers_unpickle_the_shared_value_once_not_per_item(tmp_path):
    """(The process pool's workers get it by fork, through the initializer.)"""
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # Ray's workers cannot import this file
    try:
        log = tmp_path / "loads"
        pids = {outcome.value for outcome in engine(2, backend="ray").map(
            _worker_pid, list(range(12)), shared=NotesLoads(str(log)), progress=False)}
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    loads = [int(line) for line in log.read_text().split()]
    assert None not in pids and pids <= set(loads)
    assert len(loads) == len(set(loads)) <= 2, f"{len(loads)} loads for 12 items on 2 workers"
