# Two commands set everything up on a fresh machine (as root):
#   make demo   install, then run `codesign generate` on the bundled model into demo-out/
#   make test   install, then run the whole test suite (a missing simulator fails it)
#   make formal install, then prove the formal properties (docs/formal.md) of the generated modules
# Both are idempotent: the install step reruns only when pyproject.toml changes.

VENV      ?= .venv
PYTHON    ?= python3
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.codesign-installed
DEMO_OUT  ?= demo-out
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export AMARANTH_USE_YOSYS := builtin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test bench mutants results formal clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v iverilog >/dev/null 2>&1 || { \
		echo "installing Icarus Verilog (apt-get install iverilog)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq iverilog >/dev/null; }
	@iverilog -V 2>/dev/null | head -n 1
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Chromium for the report's browser test (apt-get install chromium)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@command -v c++ >/dev/null 2>&1 || { \
		echo "installing a C++ compiler for Verilator's simulation builds (apt-get install g++)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq g++ >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# the CPU build of torch, first and exactly: a bare 'torch' would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[sim,area,fpga,formal,dev,onnx,dist]"
	touch $@

demo: install
	$(BIN)/codesign generate --out $(DEMO_OUT) --force
	@echo
	@echo "results are in $(DEMO_OUT)/: start with $(DEMO_OUT)/summary.txt and $(DEMO_OUT)/report/report.html"

test: install
	CODESIGN_REQUIRE_TOOLS=1 $(BIN)/pytest -q

bench: install
	$(BIN)/python -m bench

# the mutation suite (docs/mutants.md): every mutant must be killed; the table goes into bench/results.md
mutants: install
	$(BIN)/python -m bench mutants

# docs/formal.md: the bundled model's modules (codesign generate's default) and a 32x32 SAR tile
FORMAL_OUT ?= build/formal

formal: install
	$(BIN)/codesign generate --out $(FORMAL_OUT)/default --force --no-report >/dev/null
	$(BIN)/codesign generate --out $(FORMAL_OUT)/tile32 --rows 32 --cols 32 --adc-interface sar --force --no-report >/dev/null
	$(BIN)/python -m codesign.formal $(FORMAL_OUT)/default $(FORMAL_OUT)/tile32 --json $(FORMAL_OUT)/results.json

# examples/pruning_results.md: every pruning method on the digits model (about 5 minutes)
results: install
	$(BIN)/python examples/pruning_results.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info .pytest_cache .hypothesis
