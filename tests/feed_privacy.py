"""What a public feed message must not carry, and a walk over untyped msgpack to check it.

The feed tests decode raw frames untyped (`msgspec.msgpack.decode`): a typed decoder
would silently drop fields its struct does not declare, hiding exactly the leak they
look for.
"""

from __future__ import annotations

# Fields that name a member or an order; none may appear in a public message.
SECRET_FIELDS = {"member", "maker_member", "taker_member", "client_order_id", "maker_client_order_id",
                 "taker_client_order_id", "order_id", "maker_order_id", "taker_order_id"}


def keys_and_strings(value) -> tuple[set, set]:
    """Every map key and every string anywhere in an untyped msgpack value."""
    keys: set = set()
    strings: set = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keys.update(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            strings.add(item)
    return keys, strings
