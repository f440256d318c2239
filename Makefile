# The two set-up commands of the README (`make demo`, `make test`), plus helpers. Each
# target creates the virtual environment on first use and installs the project into it.
#
# The interpreter: the distribution's /usr/bin/python3.11 when it exists and can make a
# virtual environment (Debian builds it with PGO and LTO, and it runs the engine about
# 1.5-2x faster than a plain source build), otherwise whatever `python3` is. Override
# with `make test PYTHON=python3.12`.
PYTHON ?= $(shell if [ -x /usr/bin/python3.11 ] && /usr/bin/python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1; then echo /usr/bin/python3.11; else echo python3; fi)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

# The FIX end-to-end tests' counterparty is QuickFIX (tests/fix_helpers.py compiles a
# small initiator against it): Debian's libquickfix-dev, installed here when running as
# root on a machine with apt and the library absent (otherwise those tests are skipped).
QUICKFIX_HEADER := /usr/include/quickfix/SocketInitiator.h

# The install compiles the matching core (statemachine/exchange.py + .pxd, by Cython, see
# setup.py), so a change to either source rebuilds it.
$(STAMP): pyproject.toml setup.py statemachine/exchange.py statemachine/exchange.pxd
	@if [ ! -e $(QUICKFIX_HEADER) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q libquickfix-dev g++ >/dev/null || \
		(apt-get update -q >/dev/null && apt-get install -y -q libquickfix-dev g++ >/dev/null) || \
		echo "libquickfix-dev could not be installed: the QuickFIX end-to-end tests will be skipped"; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The tests of the state machine itself, run a second time on the pure-Python core: both
# cores must give byte-identical events, digests and snapshots.
CORE_TESTS := tests/test_core_modes.py tests/test_rules_*.py tests/test_properties_*.py \
	tests/test_audit_golden.py tests/test_audit_determinism.py tests/test_architecture.py

demo: $(STAMP)
	$(BIN)/twinbook demo

test: $(STAMP)
	@$(BIN)/python -c 'import statemachine; print("twinbook: matching core", statemachine.CORE_MODE)'
	$(BIN)/python -m pytest -q
	@echo "twinbook: the state machine tests again, on the pure-Python core"
	TWINBOOK_PURE_PYTHON=1 $(BIN)/python -m pytest -q $(CORE_TESTS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/twinbook bench core

clean:
	rm -rf $(VENV) build *.egg-info statemachine/_compiled
