"""Changes to the process environment that undo themselves.

Some engines read their configuration only from ``os.environ`` (Sail reads the ``AWS_*`` variables
when its server starts; PySpark's client converts naive datetimes with the zone in ``TZ``). Such
changes are made with :func:`scoped_environ` for as long as the engine runs, never left behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def scoped_environ(updates: Mapping[str, str]) -> Iterator[None]:
    """Set ``updates`` in ``os.environ`` for the ``with`` block, then restore what was there.

    A variable that was absent before is removed again; one that had a value gets it back, also
    when the block raises. Setting ``TZ`` also applies it to the process (``time.tzset``), and so
    does restoring it.

    Args:
        updates: variable name -> value for the duration of the block.
    """
    previous = {name: os.environ.get(name) for name in updates}
    os.environ.update(updates)
    if "TZ" in updates:
        time.tzset()
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if "TZ" in updates:
            time.tzset()
