"""Newest-wins for events whose answers may arrive out of order.

Two settings checks of one tab can run at once (the model change's check and the one for a value typed right
after it): the older one may finish last and would put a verdict for stale values on screen. Each check takes a
ticket when it starts; an answer whose ticket is no longer its tab's newest is dropped. Checks start in the order
the browser sent them (the queue is first in, first out), so the newest ticket carries the newest values.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

TABS_REMEMBERED = 4096  # tabs whose newest ticket is kept; the oldest are forgotten (a forgotten tab's answer shows)


class NewestWins:
    def __init__(self, remembered: int = TABS_REMEMBERED):
        self._tickets = itertools.count(1)
        self._newest: OrderedDict[str, int] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def begin(self, tab: str | None) -> int:
        """A ticket for a check that starts now in ``tab`` (None: a caller without a tab, never dropped)."""
        ticket = next(self._tickets)
        if tab is None:
            return ticket
        with self._lock:
            self._newest[tab] = ticket
            self._newest.move_to_end(tab)
            while len(self._newest) > self._remembered:
                self._newest.popitem(last=False)
        return ticket

    def is_newest(self, tab: str | None, ticket: int) -> bool:
        if tab is None:
            return True
        with self._lock:
            return self._newest.get(tab, ticket) <= ticket
