"""LMDB storage of (sequence, digest, bytes) snapshots; knows nothing about orders."""
