"""The node runtime's own exception tree.

Operating faults of the runtime (a data directory that is not one, a snapshot that
cannot be taken) are `ReplicaError`s naming the path. Journal and snapshot faults keep
their own trees (`journal.JournalError`, `snapshots.SnapshotError`) and pass through
unchanged, so a message always names the file and offset where the fault is.
"""

from __future__ import annotations


class ReplicaError(Exception):
    """Base of every exception raised by replica/."""


class DataDirectoryError(ReplicaError):
    """A node data directory is missing, or is not laid out as one."""


class SnapshotTakeError(ReplicaError):
    """A snapshot could not be taken (the child failed, or one is already being written)."""


class LinkProtocolError(ReplicaError):
    """A replication peer sent something the protocol does not allow (an ack beyond what
    was sent, a reply out of turn); the link is cut and the peer named."""


class PeerRefusedError(ReplicaError, ConnectionError):
    """A peer failed mutual TLS or presented a certificate that may not speak here (another
    cluster, another role); nothing it sent was read. Names the peer's address."""


class TlsSetupError(ReplicaError):
    """This node's own TLS files (CA, certificate, key) cannot be loaded; names the file."""
