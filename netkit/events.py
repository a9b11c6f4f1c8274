"""Events between the servers of one process (a composition run by `netkit run`).

    unsubscribe = events.subscribe("dhcp.lease", on_lease)    # the DNS resolver
    events.publish("dhcp.lease", event)                       # the DHCP server

Delivery is synchronous, in the publisher's loop turn; a subscriber that raises is
logged and the others still get the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("netkit.events")
_subscribers: dict[str, list[Callable[[Any], None]]] = {}


def subscribe(topic: str, callback: Callable[[Any], None]) -> Callable[[], None]:
    _subscribers.setdefault(topic, []).append(callback)

    def unsubscribe() -> None:
        callbacks = _subscribers.get(topic, [])
        if callback in callbacks:
            callbacks.remove(callback)
    return unsubscribe


def publish(topic: str, event: Any) -> None:
    for callback in list(_subscribers.get(topic, ())):
        try:
            callback(event)
        except Exception:
            log.exception("events: a subscriber of %s failed", topic)
