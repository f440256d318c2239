"""The deterministic matching core: commands in, events out.

Imports only the standard library and msgspec; does no I/O, reads no clock, uses no
randomness, threads or floats. See exchange.py for how the book is stored and
../shared/RULES.md for the rules it implements.
"""

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
from statemachine.exchange import Exchange
from statemachine.invariants import check_invariants
from statemachine.snapshot import STATE_FORMAT_VERSION, canonical_digest, decode_state, digest_of, encode_state

__all__ = [
    "AddInstrument", "CancelOrder", "Checkpoint", "Command", "EndOfDay", "HaltInstrument",
    "MalformedCommand", "MassCancel", "PlaceOrder", "ReplaceOrder", "ResumeInstrument",
    "InvariantViolation", "SequenceError", "SnapshotFormatError", "StateMachineError",
    "Event", "InstrumentStatusChanged", "LevelChanged", "OrderAccepted", "OrderCancelled",
    "OrderRejected", "OrderReplaced", "StopTriggered", "TradeExecuted",
    "Exchange", "check_invariants", "STATE_FORMAT_VERSION", "canonical_digest",
    "decode_state", "digest_of", "encode_state",
]
