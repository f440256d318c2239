"""The seeded command stream the tests share: the same generator the tools use.

`replica.workload.generate_commands(count, seed)` gives long, varied streams covering
every command type (two instruments, one with tick/lot sizes and a band; three members;
prices close enough that orders cross; all order types, tifs, STP modes, icebergs, stops;
cancels and replaces of live and dead ids; mass cancels, halts, end of day, malformed
input). Tests import it from here so that they name one place.
"""

from replica.workload import generate_commands

__all__ = ["generate_commands"]
