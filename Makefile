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

.PHONY: install browser demo test lint docs clean bench-compare bench-fusions bench-avmnist bench-serve

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

# Headless Chromium for the report and web-page tests (Debian packages; the tests skip without it).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
	  echo "chromium not installed (needs root): browser tests will skip"

test: install browser
	$(PY) -m pytest -q -p no:cacheprovider

# Benchmarks (minutes to hours; results with their machine go to benchmarks/results/).
bench-compare: install
	$(PY) -m benchmarks.compare_digits_av

bench-fusions: install
	$(PY) -m benchmarks.fusions_digits_av

bench-avmnist: install
	$(PY) -m benchmarks.avmnist

bench-serve: install
	$(PY) -m benchmarks.serve

# The documentation site (docs/, mkdocs.yml) into site/; strict: a broken link or reference fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports

clean:
	rm -rf runs lightning_logs .pytest_cache site
