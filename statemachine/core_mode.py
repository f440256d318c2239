"""Which matching core a process runs: the compiled one or the pure-Python one.

`statemachine/exchange.py` is plain Python and always importable. A build with Cython
and a C compiler also compiles that same file (with the C types of exchange.pxd) into
an extension module kept in statemachine/_compiled/ (setup.py). The package's
`__init__` puts that directory first on the package's module search path, so
`statemachine.exchange` is the compiled module when it exists, unless this process was
started with the environment variable TWINBOOK_PURE_PYTHON=1, which forces the pure
Python one. `statemachine.CORE_MODE` then says which one was imported: "compiled" or
"pure". Both give byte-identical events, digests and snapshots (tests/test_core_modes.py
and the suite's second pass under TWINBOOK_PURE_PYTHON=1 in the Makefile).

This is the one module of the state machine that reads the environment: once, at
import, and only this variable (tests/test_architecture.py holds it to that). The
choice cannot change what the state machine computes, only how fast.
"""

import os

PURE_PYTHON_VARIABLE = "TWINBOOK_PURE_PYTHON"

PURE_PYTHON_FORCED = os.environ.get(PURE_PYTHON_VARIABLE, "") == "1"

# The directory (inside the package) that holds the compiled `exchange` module.
COMPILED_DIRECTORY_NAME = "_compiled"
