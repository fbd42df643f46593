# The README's commands. `make demo` and `make test` work on a fresh clone: they create .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q
# CPU torch. On this project's machines the wheel lies on disk; elsewhere add your CPU or CUDA index
# with TORCH_INDEX="--index-url URL". Never torchvision / torchaudio / timm: polyfuse needs none.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH_INDEX) "$(TORCH)"
	$(PIP) install -e ".[dev]"
	$(PY) -c "import torch; print('torch', torch.__version__)"
	touch $@

demo: install
	$(VENV)/bin/polyfuse fit --out runs/digits-av

test: install
	$(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy src

clean:
	rm -rf runs lightning_logs .pytest_cache
