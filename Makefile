# `make demo` and `make test` bootstrap .venv idempotently (torch pinned first), then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@# torch first and pinned: an unpinned torch pulls gigabytes of CUDA packages on CPU machines
	@$(BIN)/python -m pip install -q torch==2.13.0
	@# open3d needs the system library libusb-1.0
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null)) \
	      || { echo "error: could not install libusb-1.0-0 (needed by open3d)"; exit 1; }; \
	  else echo "error: open3d needs the system library libusb-1.0-0: run 'sudo apt-get install libusb-1.0-0'"; exit 1; fi; \
	fi
	@$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pretrain ecg

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist worksteal

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
