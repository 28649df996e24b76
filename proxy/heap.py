"""The process's garbage-collector policy: long-lived configuration out of the collector's way.

Config, route tables, clusters and components live as long as the process (or until a
reload replaces them). Left in the collected generations, every full collection walks them
all: with thousands of routes, each one costs milliseconds on the request path. After
start-up they are frozen (`gc.freeze`). A reload unfreezes first, so what it retires can
still be collected, and freezes again once the retired parts are gone.
"""

from __future__ import annotations

import gc

_settled = False
"""The serving process opted in (Server.run); code that only embeds a Server does not."""


def settle() -> None:
    """Collect, then freeze everything that survived."""
    global _settled
    _settled = True
    gc.collect()
    gc.freeze()


def unsettle() -> bool:
    """Make frozen objects collectable again (before they may become garbage); whether the
    heap had been settled, so the caller knows to settle it again later."""
    if not _settled:
        return False
    gc.unfreeze()
    return True
