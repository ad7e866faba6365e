# The two commands of the README: `make demo` and `make test`. Each bootstraps its own .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.i2l-installed
export I2L_SMOKE_CELL_TIMEOUT ?= 600

.PHONY: demo test unit notebooks lint venv benchmarks clean strip outputs

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

## Strip every notebook's outputs.
strip: $(STAMP)
	$(BIN)/nbstripout notebooks/*.ipynb

## Execute the notebooks that run on a CPU in minutes, outside smoke mode and with the shipped model, and keep their
## outputs, so that GitHub and Colab show figures before anything runs; 04 (hours on a GPU) stays without outputs.
## ../shared is hidden (I2L_SHARED_DATA): no real formula from it reaches a committed output.
OUTPUT_NOTEBOOKS := $(filter-out notebooks/04_%,$(wildcard notebooks/0*.ipynb))
outputs: $(STAMP)
	$(BIN)/nbstripout notebooks/04_training.ipynb
	I2L_SMOKE=0 I2L_SHARED_DATA=/nonexistent $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1800 $(OUTPUT_NOTEBOOKS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
