"""An in-process cache of the item images of assignments people hold right now.

Images are 90% of a study's requests (25 per assignment) and never change once imported.
Accepting an assignment already reads its 25 PNGs in the same transaction, so the images a
worker is about to ask for are kept here, and the image requests are answered without a
thread hop or a database query (bench/server.py measured those at ~1 ms of CPU each).

An entry lives only while its allocation does (until `expires_at`); after that, or for an
assignment never seen here, the route asks the database, which applies the same rule the
cache stands for (never an image of an assignment still in the pool). The cache is bounded
(least recently used assignments go first) and belongs to one app (`app.state`), so tests
running several apps side by side never share it. Both the accept route (after its database
work returns from the threadpool) and the image route use it on the event loop, one at a
time, so it needs no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime


class ItemImageCache:
    def __init__(self, max_assignments: int = 2048) -> None:
        self._max = max_assignments
        self._entries: OrderedDict[str, tuple[tuple[bytes, ...], datetime]] = OrderedDict()

    def remember(self, public_id: str, images: Sequence[bytes], expires_at: datetime) -> None:
        self._entries[public_id] = (tuple(images), expires_at)
        self._entries.move_to_end(public_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def get(self, public_id: str, position: int, now: datetime) -> bytes | None:
        """The PNG, or None when the route must ask the database."""
        entry = self._entries.get(public_id)
        if entry is None:
            return None
        images, expires_at = entry
        if now >= expires_at:
            del self._entries[public_id]
            return None
        self._entries.move_to_end(public_id)
        return images[position] if position < len(images) else None
