# Everything a newcomer needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RAY_VENV := .venv-ray
RAY_VERSION := 2.60.0
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-zactor clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,data,train,serve,dashboard]'
	touch $(STAMP)

# An editable install is not byte-compiled as a regular one is, and where
# PYTHONDONTWRITEBYTECODE is set every process would compile zactor again at start-up.
.PHONY: bytecode
bytecode: $(STAMP)
	$(PY) -m compileall -q zactor cli > /dev/null

demo: bytecode
	$(PY) examples/wordcount.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Tests that run "hosts" in network namespaces (tests/netns.py) need iproute2; as root, install
# it when missing (they skip otherwise). Does nothing once `ip` is there.
.PHONY: netns-tools
netns-tools:
	@command -v ip >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq iproute2) || \
		echo "could not install iproute2: network-namespace tests will be skipped" >&2

# The Slurm provider's tests run a real one-machine Slurm (slurmctld, slurmd, munge), which
# the tests start in a directory of their own and stop again (tests/slurm.py); as root,
# install Debian's packages when missing. Does nothing once sbatch is there.
.PHONY: slurm-tools
slurm-tools:
	@command -v sbatch >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			slurm-wlm munge >/dev/null) || \
		echo "could not install slurm-wlm and munge: the Slurm tests will be skipped" >&2

# The dashboard's browser test drives Debian's chromium with Playwright (never Playwright's own
# browser download, which this network refuses); as root, install it when missing (the test
# skips otherwise). Does nothing once /usr/bin/chromium is there.
.PHONY: browser-tools
browser-tools:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium >/dev/null) || \
		echo "could not install chromium: the dashboard's browser test will be skipped" >&2

test: lint bytecode netns-tools slurm-tools browser-tools
	$(PY) -m pytest

# Ray lives in a virtualenv of its own: it is a point of comparison, never a dependency.
$(RAY_VENV)/.installed-stamp:
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install -q --upgrade pip
	$(RAY_VENV)/bin/python -m pip install -q 'ray==$(RAY_VERSION)' numpy psutil
	touch $@

# Ray's pip environments need virtualenv (it is in ray[default], not in ray).
$(RAY_VENV)/.virtualenv-stamp: $(RAY_VENV)/.installed-stamp
	$(RAY_VENV)/bin/python -m pip install -q virtualenv
	touch $@

# Ray Data needs pandas and pyarrow (they are in ray[data], not in ray).
$(RAY_VENV)/.data-stamp: $(RAY_VENV)/.installed-stamp
	$(RAY_VENV)/bin/python -m pip install -q pandas pyarrow fsspec
	touch $@

# Dask, for the data benchmark's third column; in a virtualenv of its own too.
DASK_VENV := .venv-dask
$(DASK_VENV)/.installed-stamp:
	$(PYTHON) -m venv $(DASK_VENV)
	$(DASK_VENV)/bin/python -m pip install -q 'dask[dataframe]' pyarrow pandas psutil
	touch $@

# Ray Tune's own dependencies (pydantic for Train V2, tensorboardX...) are in ray[tune].
$(RAY_VENV)/.tune-stamp: $(RAY_VENV)/.installed-stamp
	$(RAY_VENV)/bin/python -m pip install -q 'ray[tune]==$(RAY_VERSION)'
	touch $@

# Ray Serve's HTTP proxy (uvicorn, starlette, fastapi...) is in ray[serve], Ray's dashboard
# (dashboard_bench.py) in ray[default].
$(RAY_VENV)/.serve-stamp: $(RAY_VENV)/.installed-stamp
	$(RAY_VENV)/bin/python -m pip install -q 'ray[default,serve]==$(RAY_VERSION)'
	touch $@

# The serve benchmark's HTTP load generator, wrk; as root, install it when missing (the HTTP
# rows then fall back to the benchmark's own Python client). Does nothing once wrk is there.
.PHONY: bench-tools
bench-tools:
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || \
		echo "could not install wrk: serve_bench.py's HTTP rows use its Python client" >&2

bench: bytecode $(RAY_VENV)/.installed-stamp $(RAY_VENV)/.virtualenv-stamp $(RAY_VENV)/.data-stamp \
		$(RAY_VENV)/.tune-stamp $(RAY_VENV)/.serve-stamp $(DASK_VENV)/.installed-stamp bench-tools
	$(PY) benchmarks/microbench.py --compare --ray-python $(RAY_VENV)/bin/python
	$(PY) benchmarks/cluster_bench.py --ray-python $(RAY_VENV)/bin/python
	$(PY) benchmarks/runtime_env_bench.py --ray-python $(RAY_VENV)/bin/python
	$(PY) benchmarks/data_bench.py --ray-python $(RAY_VENV)/bin/python \
		--dask-python $(DASK_VENV)/bin/python
	$(PY) benchmarks/tune_bench.py --ray-python $(RAY_VENV)/bin/python
	$(PY) benchmarks/serve_bench.py --ray-python $(RAY_VENV)/bin/python
	$(PY) benchmarks/dashboard_bench.py --ray-python $(RAY_VENV)/bin/python

bench-zactor: bytecode
	$(PY) benchmarks/microbench.py

clean:
	rm -rf $(VENV) $(RAY_VENV) $(DASK_VENV) build *.egg-info
