"""Deterministic simulation of a whole twinbook cluster under faults, from one seed.

The production role logic (PrimaryCore, StandbyCore, StandbyLinkCore, ReleasePolicy,
decide_hello, WatchdogCore) and the real journal run on a simulated clock, network and
disk; see cluster.py for the actors, node.py for how a node is driven, network.py and
disk.py for the fault models, checker.py for the properties. docs/RELIABILITY.md
reports what has run and what it found.
"""

from replica.simulation.cluster import SimulationError, SimulationResult, Simulator, run_seed

__all__ = ["SimulationError", "SimulationResult", "Simulator", "run_seed"]
