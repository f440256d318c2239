"""The deterministic matching core: commands in, events out.

Imports only the standard library and msgspec; does no I/O, reads no clock, uses no
randomness, threads or floats. See exchange.py for how the book is stored and
../shared/RULES.md for the rules it implements.

`CORE_MODE` says which core this process runs: "compiled" (exchange.py compiled by
Cython, found in _compiled/) or "pure" (exchange.py as Python, when no compiled module
was built or TWINBOOK_PURE_PYTHON=1); core_mode.py explains the choice.
"""

from statemachine.core_mode import COMPILED_DIRECTORY_NAME, PURE_PYTHON_FORCED

if not PURE_PYTHON_FORCED:
    # Before any submodule is imported: `statemachine.exchange` is then looked up in
    # _compiled/ first, and found there when the build compiled it.
    __path__.insert(0, f"{__path__[0]}/{COMPILED_DIRECTORY_NAME}")

from statemachine.commands import (
    AddInstrument,
    CancelOrder,
    Checkpoint,
    Command,
    EndOfDay,
    HaltInstrument,
    MalformedCommand,
    MassCancel,
    PlaceOrder,
    ReplaceOrder,
    ResumeInstrument,
)
from statemachine.errors import InvariantViolation, SequenceError, SnapshotFormatError, StateMachineError
from statemachine.events import (
    Event,
    InstrumentStatusChanged,
    LevelChanged,
    OrderAccepted,
    OrderCancelled,
    OrderRejected,
    OrderReplaced,
    StopTriggered,
    TradeExecuted,
)
from statemachine import exchange as _exchange
from statemachine.exchange import Exchange
from statemachine.invariants import check_invariants
from statemachine.snapshot import STATE_FORMAT_VERSION, canonical_digest, decode_state, digest_of, encode_state

CORE_MODE = "pure" if _exchange.__file__.endswith(".py") else "compiled"

__all__ = [
    "CORE_MODE",
    "AddInstrument", "CancelOrder", "Checkpoint", "Command", "EndOfDay", "HaltInstrument",
    "MalformedCommand", "MassCancel", "PlaceOrder", "ReplaceOrder", "ResumeInstrument",
    "InvariantViolation", "SequenceError", "SnapshotFormatError", "StateMachineError",
    "Event", "InstrumentStatusChanged", "LevelChanged", "OrderAccepted", "OrderCancelled",
    "OrderRejected", "OrderReplaced", "StopTriggered", "TradeExecuted",
    "Exchange", "check_invariants", "STATE_FORMAT_VERSION", "canonical_digest",
    "decode_state", "digest_of", "encode_state",
]
