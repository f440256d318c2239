"""The matching-rules version of this build, and the rules versions it can replay.

Three things in twinbook carry a version, each guarding a different kind of change:

* the journal segment format (journal/format.py `FORMAT_VERSION`, in every segment
  header): how records are framed on disk;
* the snapshot state encoding (statemachine/snapshot.py `STATE_FORMAT_VERSION`, stored
  with every snapshot): how a state is serialised;
* the matching rules (`RULES_VERSION`, here): what events a given record stream
  produces. Two builds with the same rules version produce byte-identical events and
  equal digests from the same journal; the golden journals in tests/golden/ pin that.

A change to matching behaviour (anything that changes the events or digests of an
existing journal) bumps RULES_VERSION and is recorded in docs/CHANGELOG.md. A node
writes `Checkpoint(kind="rules", version=RULES_VERSION)` into its journal so that the
audit tools know which rules a record stream was written under; a journal without such
a record was written under rules version 1. A build replays only the versions listed in
REPLAYABLE_RULES_VERSIONS, and refuses the others with a clear message rather than
producing events that never happened.

This module imports nothing, so anything (tools, tests, the state machine) may read it.
"""

# History (docs/CHANGELOG.md says more):
#   1  the rules of RULES.md as first built.
#   2  an iceberg may show at most ICEBERG_TRANCHES_MAX (statemachine/exchange.py)
#      tranches: qty > display_qty * 10,000 is rejected `invalid_quantity`, at place and
#      by a replace of an iceberg.
#   3  client order ids and symbols are bounded printable ASCII (CLIENT_ORDER_ID_BYTES_MAX,
#      SYMBOL_BYTES_MAX in statemachine/exchange.py): a PlaceOrder breaking either is
#      rejected `client_order_id_too_long` / `client_order_id_not_printable` /
#      `symbol_too_long` / `symbol_not_printable`, an AddInstrument the same for its symbol.
RULES_VERSION = 3

# The rules versions whose journals this build replays to exactly the events they
# produced when they were written. Keep old versions here only while the code still
# reproduces them bit for bit (the golden journals of each version prove it). The
# exchange applies the version the journal's rules checkpoints name (version 1 until
# the first one), so a version-1 journal replays under version-1 rules.
REPLAYABLE_RULES_VERSIONS = (1, 2, 3)

# What a journal with no `Checkpoint(kind="rules")` record was written under.
RULES_VERSION_WHEN_UNRECORDED = 1
