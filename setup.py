"""Build of the compiled matching core: statemachine/exchange.py through Cython.

`pip install .` (and `-e .`, which `make` uses) compiles the unchanged pure-Python
source statemachine/exchange.py, with the C types of statemachine/exchange.pxd, into the
extension module `statemachine.exchange`, and puts it in statemachine/_compiled/ rather
than beside the source: statemachine/__init__.py puts that directory first on the
package's search path unless TWINBOOK_PURE_PYTHON=1, so one environment variable
chooses between the compiled core and the pure-Python one (which stays importable
and is what runs when no compiled module exists). Without Cython or a C compiler the
build is skipped and the package is pure Python.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

CORE_MODULE = "statemachine.exchange"


def _into_compiled_directory(path: str) -> str:
    directory, filename = os.path.split(path)
    if os.path.basename(directory) == "_compiled":
        return path
    return os.path.join(directory, "_compiled", filename)

# Behaviour-preserving Cython directives: bounds and negative-index checks stay on (the
# compiled core must fail where Python would, never read out of bounds), division keeps
# Python's semantics; only the per-call profiling hooks and the docstrings' signatures
# are left out.
DIRECTIVES = {
    "language_level": 3,
    "infer_types": True,
    # The .py's annotations document Python types (`int` is unbounded there); the C
    # types come from the .pxd only.
    "annotation_typing": False,
    "embedsignature": False,
    "binding": False,
}


class BuildCompiledCore(build_ext):
    """Places `statemachine.exchange` in statemachine/_compiled/, in place or in the wheel."""

    def get_ext_fullpath(self, ext_name: str) -> str:
        path = super().get_ext_fullpath(ext_name)
        return _into_compiled_directory(path) if ext_name == CORE_MODULE else path

    def _get_inplace_equivalent(self, build_py, ext):
        # setuptools copies an in-place build beside its package's source.
        inplace_file, regular_file = super()._get_inplace_equivalent(build_py, ext)
        if ext.name == CORE_MODULE:
            inplace_file = _into_compiled_directory(inplace_file)
            os.makedirs(os.path.dirname(inplace_file), exist_ok=True)
            return inplace_file, _into_compiled_directory(regular_file)
        return inplace_file, regular_file

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # a missing compiler: the pure-Python core stays
            if os.environ.get("TWINBOOK_REQUIRE_COMPILED") == "1":
                raise
            print(f"twinbook: compiled core not built ({error}); the pure-Python core will run", file=sys.stderr)


def extensions() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("twinbook: Cython is not installed; the pure-Python core will run", file=sys.stderr)
        return []
    from setuptools import Extension

    return cythonize(
        [Extension(CORE_MODULE, ["statemachine/exchange.py"], extra_compile_args=["-O2"])],
        compiler_directives=DIRECTIVES,
        build_dir="build/cython",
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildCompiledCore})
