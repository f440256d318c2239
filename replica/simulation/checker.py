"""The properties a simulated run must keep, checked as it goes and at its end.

1. Nothing released is lost: every record whose outputs a primary released (execution
   reports, market data) is, at the end, in the final primary's journal at the same
   sequence, with the same epoch and body; and no two different records are ever
   released for one sequence. Releases by an old-epoch primary after a promotion are
   counted; they are only allowed for records the new epoch also holds, which this
   same check enforces.
2. Every acknowledged order is present exactly once: each (member, client order id) a
   client saw accepted (or, on resubmission, rejected as a duplicate naming its order
   id) is accepted exactly once, with that order id, when the final primary's journal
   is replayed from the start.
3. Replicas never diverge: no divergence alarm fires during the run (both sides
   compare state digests every 1024 records), and at the end both journals hold the
   same records (equal chain values at the last sequence) and both exchanges have the
   same state digest.
4. Corruption is never applied: every time a node opens its journal (start, restart,
   after cutting a divergent tail) and at the end, every record in it must be one that
   some primary wrote, byte for byte (`record_written` keeps each record's origin by
   (epoch, sequence)); a bit flipped on disk or in flight must have been refused.
5. Progress: after the faults stop, the cluster settles and acknowledges a new order
   within a bounded simulated time (checked by the simulator's healing phase).

And, whenever a node recovers (from its newest good snapshot plus the journal after
it), the state it recovers is the one a replay of its whole journal gives: a snapshot
that is corrupt, beyond the journal, or of another history must be skipped, never used.
"""

from __future__ import annotations

from collections import Counter

import journal
from statemachine import Exchange
from statemachine.codec import decode_command
from statemachine.events import OrderAccepted


def _skip_kind(reason: str) -> str:
    """A short name for why recovery skipped a snapshot, for the statistics."""
    if "beyond the end" in reason:
        return "beyond_journal"
    if "chain value" in reason:
        return "other_history"
    return "corrupt"


class Checker:
    def __init__(self, simulator) -> None:
        self.simulator = simulator
        self.violations: list[str] = []
        # (epoch, sequence) -> the bodies primaries wrote there. Usually one; a primary
        # restarted in the same epoch may write another body at a sequence whose first
        # record it lost unsynced (never released, so never acknowledged).
        self.origin: dict[tuple[int, int], set[bytes]] = {}
        self.released_records: dict[int, tuple[int, bytes]] = {}  # sequence -> (epoch, body)
        self.acknowledged_orders: dict[tuple[str, str], int] = {}
        self.highest_epoch_started = 0
        self.old_epoch_releases = 0
        self.corruption_injected = 0
        self.corruption_refused = 0
        self.rebuilt_after_corruption = 0
        self.journal_checks = 0
        self.read_faults = 0
        self.snapshots_written = 0
        self.recoveries_from_snapshot = 0
        self.snapshots_skipped: Counter = Counter()
        self.released_sequences: dict[str, int] = {}  # node -> the next sequence it may release

    def violation(self, text: str) -> None:
        self.simulator.trace(f"VIOLATION: {text}")
        self.violations.append(text)

    # ------------------------------------------------------------ as it goes

    def record_written(self, node, sequence: int, epoch: int, body: bytes) -> None:
        key = (epoch, sequence)
        known = self.origin.get(key)
        if known is None:
            self.origin[key] = {body}
        else:
            known.add(body)
        if epoch > self.highest_epoch_started:
            self.highest_epoch_started = epoch

    def released(self, node, first_sequence: int, last_sequence: int) -> None:
        self.check_release_rules(node, first_sequence, last_sequence)
        if node.epoch < self.highest_epoch_started:
            self.old_epoch_releases += last_sequence - first_sequence + 1
        for record in journal.read_records(node.directory.journal, first_sequence, last_sequence, live=True):
            mine = (record.epoch, record.body)
            earlier = self.released_records.get(record.sequence)
            if earlier is None:
                self.released_records[record.sequence] = mine
            elif earlier != mine:
                self.violation(
                    f"{node.name} (epoch {node.epoch}) released sequence {record.sequence} of epoch {record.epoch}, "
                    f"but a record of epoch {earlier[0]} was released for it before"
                )

    def check_release_rules(self, node, first_sequence: int, last_sequence: int) -> None:
        """The ordering rules of the (pipelined) commit loop, checked at every release:
        in sequence order, nothing past the local durable sequence, and in sync mode
        nothing past what the standby reported durable."""
        if first_sequence != self.released_sequences.get(node.name, first_sequence):
            self.violation(f"{node.name} released {first_sequence}..{last_sequence} after "
                           f"{self.released_sequences[node.name] - 1}: out of sequence order")
        self.released_sequences[node.name] = last_sequence + 1
        if last_sequence > node.durable_sequence:
            self.violation(f"{node.name} released up to {last_sequence} with only {node.durable_sequence} durable")
        release = node.release
        if (release is not None and release.mode == "sync" and release.standby_required and not release.degraded
                and last_sequence > release.standby_durable_sequence):
            self.violation(f"{node.name} released up to {last_sequence} with the standby durable only up to "
                           f"{release.standby_durable_sequence}")

    def holds_everything_released(self, node) -> bool:
        """Whether `node`'s journal holds every record released so far, durably (for a
        running node, up to its durable sequence; a down node's disk is what survived).

        The fault budget of two nodes is one damaged copy: a bit may be flipped in a
        journal, or a journal rebuilt from nothing, only while the other node holds all
        that was released (the simulator's seeds 34 and 121 once flipped a bit in the
        only copy of a promoted node's releases). The whole journal must verify, not
        only the released part: recovery refuses a journal with a bad record anywhere
        (seed 1224 once flipped a bit past the released records on one node, and then
        one in the other node's journal)."""
        if not self.released_records:
            return True
        last = max(self.released_records)
        if node.role != "down":
            if node.durable_sequence < last:
                return False
        held = {}
        try:
            end = None
            if node.role == "down":
                # A crash may have left a torn tail, which recovery will cut: that is no
                # damage. Corruption anywhere is.
                summary = journal.inspect(node.directory.journal)
                if summary["state"] == "corrupt":
                    return False
                end = summary["last_sequence"] or 0
            for record in journal.read_records(node.directory.journal, 1, end, live=node.role != "down"):
                if record.sequence in self.released_records:
                    held[record.sequence] = (record.epoch, record.body)
        except journal.JournalError:
            return False
        return all(held.get(sequence) == released for sequence, released in self.released_records.items())

    def acknowledged(self, member: str, client_order_id: str, order_id: int) -> None:
        key = (member, client_order_id)
        earlier = self.acknowledged_orders.get(key)
        if earlier is not None and earlier != order_id:
            self.violation(f"{member} order {client_order_id} acknowledged as {earlier} and as {order_id}")
        self.acknowledged_orders[key] = order_id

    def recovered(self, node, result) -> None:
        """A node rebuilt its exchange (recover_exchange): from a snapshot or not, it must
        be the state a replay of its whole journal gives."""
        if result.snapshot_sequence:
            self.recoveries_from_snapshot += 1
        for _sequence, reason in result.skipped_snapshots:
            self.snapshots_skipped[_skip_kind(reason)] += 1
        exchange = Exchange()
        for batch in journal.read_tuple_batches(node.directory.journal, 1, result.exchange.last_sequence, live=True):
            for sequence, _epoch, timestamp_ns, body in batch:
                exchange.apply(sequence, timestamp_ns, decode_command(body))
        if exchange.last_sequence != result.exchange.last_sequence or \
                exchange.state_digest() != result.exchange.state_digest():
            self.violation(f"{node.name} recovered a state at {result.exchange.last_sequence} (snapshot "
                           f"{result.snapshot_sequence}) that a full replay of its journal does not give")

    def journal_opened(self, node) -> None:
        """Every record a node holds must be one some primary wrote: nothing corrupt."""
        self.journal_checks += 1
        for record in journal.read_records(node.directory.journal, live=True):
            bodies = self.origin.get((record.epoch, record.sequence))
            if bodies is None:
                self.violation(f"{node.name} holds record {record.sequence} of epoch {record.epoch}, "
                               "which no primary wrote")
            elif record.body not in bodies:
                self.violation(f"{node.name}'s record {record.sequence} differs from what its primary wrote")

    # ------------------------------------------------------------ at the end

    def final(self, simulator) -> None:
        primary = simulator.primary()
        if primary is None:
            self.violation("no single primary at the end")
            return
        standby = [node for node in simulator.nodes.values() if node is not primary][0]
        for node in (primary, standby):
            self.journal_opened(node)
        records = {record.sequence: record for record in journal.read_records(primary.directory.journal, live=True)}
        for sequence, (epoch, body) in sorted(self.released_records.items()):
            record = records.get(sequence)
            if record is None or record.epoch != epoch or record.body != body:
                self.violation(f"released record {sequence} (epoch {epoch}) is not in the final primary's journal")
                return
        # Replay from the start: each acknowledged order accepted exactly once.
        exchange = Exchange()
        accepted: Counter = Counter()
        order_ids: dict[tuple[str, str], int] = {}
        for sequence in sorted(records):
            record = records[sequence]
            for event in exchange.apply(sequence, record.timestamp_ns, decode_command(record.body)):
                if type(event) is OrderAccepted:
                    key = (event.member, event.client_order_id)
                    accepted[key] += 1
                    order_ids[key] = event.order_id
        for key, order_id in self.acknowledged_orders.items():
            if accepted[key] != 1:
                self.violation(f"acknowledged order {key} is accepted {accepted[key]} times in the final journal")
                return
            if order_ids[key] != order_id:
                self.violation(f"acknowledged order {key} was order {order_id} but is {order_ids[key]} at the end")
                return
        if standby.role != "standby" or standby.last_sequence != primary.last_sequence:
            self.violation(f"standby at {standby.last_sequence}, primary at {primary.last_sequence} at the end")
            return
        if standby.writer.last_crc != primary.writer.last_crc:
            self.violation(f"journals differ: chain values at {primary.last_sequence} are "
                           f"{primary.writer.last_crc:#x} and {standby.writer.last_crc:#x}")
        if standby.exchange.state_digest() != primary.exchange.state_digest():
            self.violation("state digests differ at the end")
        if exchange.state_digest() != primary.exchange.state_digest():
            self.violation("replaying the final journal gives another state than the primary's")

    def statistics(self) -> dict:
        return {
            "records_released": len(self.released_records),
            "orders_acknowledged": len(self.acknowledged_orders),
            "old_epoch_releases": self.old_epoch_releases,
            "corruption_injected_in_flight": self.corruption_injected,
            "corrupt_frames_refused": self.corruption_refused,
            "rebuilt_after_corruption": self.rebuilt_after_corruption,
            "journal_checks": self.journal_checks,
            "read_faults_happened": self.read_faults,
            "snapshots_written": self.snapshots_written,
            "recoveries_from_snapshot": self.recoveries_from_snapshot,
            **{f"snapshots_skipped_{kind}": count for kind, count in sorted(self.snapshots_skipped.items())},
        }
