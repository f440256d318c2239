"""The state machine's own exception tree.

Business rejections are never exceptions: they are `rejected` events with a stable
reason code. The exceptions here mean the state machine itself is being misused or is
broken, and the node must stop rather than go on with a state nobody can trust.
"""

from __future__ import annotations


class StateMachineError(Exception):
    """Base of every exception raised by the state machine."""


class SequenceError(StateMachineError):
    """A record was applied out of order: the state machine needs gapless sequences."""


class InvariantViolation(StateMachineError):
    """A book invariant does not hold: the state can no longer be trusted."""


class SnapshotFormatError(StateMachineError):
    """Snapshot bytes that are not a state this version of the state machine can restore."""
