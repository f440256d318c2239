"""Limits of the snapshot store: every size, count and retry in snapshots/ is bounded here.

Why a file of its own: a limit that lives next to the loop it bounds tends to be
forgotten when the loop is copied. Here they are reviewed together, and each one says
why it has the value it has. Units are the last word of every name.

The store checks these with explicit `if ...: raise` preconditions; exceeding one raises
a SnapshotError subclass naming the limit, never a silent truncation.
"""

from __future__ import annotations

KIB: int = 1024
MIB: int = 1024 * KIB
GIB: int = 1024 * MIB
TIB: int = 1024 * GIB

# Chunking. LMDB stores a large value in contiguous overflow pages that must all be
# allocated from the free list at once; 1 MiB values keep each allocation small enough to
# be satisfied from a fragmented free list, while keeping the per-chunk B-tree entry
# overhead negligible (a 100 MB state is 100 keys).
CHUNK_SIZE_DEFAULT_BYTES: int = 1 * MIB
# Smaller chunks only make sense in tests (many chunks from a small state).
CHUNK_SIZE_MIN_BYTES: int = 4 * KIB
CHUNK_SIZE_MAX_BYTES: int = 16 * MIB

# The largest state a snapshot may hold. read() returns the state as one bytes object,
# so this is also the memory a reader must be ready to spend. 1 M resting orders
# serialise to roughly 100 MB; 4 GiB leaves a wide margin without allowing a runaway
# serialiser to fill the disk.
STATE_SIZE_MAX_BYTES: int = 4 * GIB
# Follows from the two limits above; bounds every loop over one snapshot's chunks.
CHUNK_COUNT_MAX: int = STATE_SIZE_MAX_BYTES // CHUNK_SIZE_MIN_BYTES

# Retention: how many snapshots the store keeps after each put. More than one, so a
# snapshot that fails its digest can be skipped in favour of an older one; few, because
# each snapshot costs its full size on disk (LMDB also keeps freed pages of the previous
# transactions until no reader needs them).
RETENTION_DEFAULT: int = 3
RETENTION_MAX: int = 64

# The LMDB map is virtual address space, not disk: the data file only grows as pages are
# written. Start generous, grow on demand (see SnapshotStore docstring), never beyond
# the maximum (which also bounds how far a runaway caller can grow the file).
MAP_SIZE_DEFAULT_BYTES: int = 1 * GIB
MAP_SIZE_MIN_BYTES: int = 1 * MIB
MAP_SIZE_MAX_BYTES: int = 1 * TIB
# Each growth at least doubles the map, so 8 growths cover a 256x misestimate in one put.
MAP_GROWTH_ATTEMPTS_MAX: int = 8
# Room asked for beyond the state bytes themselves: B-tree pages copied on write, the
# free list, the metadata record. Generous on purpose; it is address space.
MAP_HEADROOM_BYTES: int = 4 * MIB

# Another process (the forked snapshot writer) may grow the map while we hold it open;
# LMDB then refuses to begin a transaction until we adopt the new size. Adopting it once
# is normally enough; a few retries cover a writer growing it again in between.
MAP_RESIZED_RETRIES_MAX: int = 4

# LMDB reader table slots (one per concurrent read transaction across all processes
# that have the environment open: the node, its snapshot child, operator tools).
READERS_MAX: int = 126
