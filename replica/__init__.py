"""The node runtime: where the state machine, the journal and the snapshots meet."""
