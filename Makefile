# The two commands of the README: `make demo` and `make test`. Each bootstraps its own .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.i2l-installed
export I2L_SMOKE_CELL_TIMEOUT ?= 600

.PHONY: demo test unit notebooks lint venv benchmarks clean strip

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

## The main job on the embedded synthetic data: make data, train on the CPU, evaluate, transcribe.
demo: $(STAMP)
	$(BIN)/i2l demo

## Every test plus every notebook (nbmake, smoke mode).
test: lint unit notebooks

lint: $(STAMP)
	$(BIN)/ruff check i2l tests benchmarks notebooks

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q -ra

notebooks: $(STAMP)
	I2L_SMOKE=1 $(BIN)/python -m pytest --nbmake --nbmake-timeout=$(I2L_SMOKE_CELL_TIMEOUT) notebooks -q

benchmarks: $(STAMP)
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

strip: $(STAMP)
	$(BIN)/nbstripout notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
