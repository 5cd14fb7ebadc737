"""Free loopback ports for tests and benches (never used by the product itself).

They come from below the kernel's ephemeral range (`pipeline.procs.net.listening_port_range`):
a port picked from inside it can be handed to any outgoing connection while the server
that owns it is down, and the restarted server then fails to bind (a cluster test's
killed broker node did, once).
"""

from __future__ import annotations

import random

from pipeline.loadtest.soak_stack import free_block

_HANDED_OUT: set[int] = set()
_RNG = random.Random()


def _free_run(count: int) -> int:
    base = free_block(count, _RNG, taken=_HANDED_OUT)   # the soak stack's picker: the same range rule
    _HANDED_OUT.update(range(base, base + count))
    return base


def free_port() -> int:
    """A free loopback port that this process has not handed out before (two quick calls
    never return the same number: a broker whose client and controller ports collide does
    not start)."""
    return _free_run(1)


def port_run(count: int) -> int:
    """A base port such that base .. base+count-1 are all free on loopback (a cluster's
    consecutive ports), none of them handed out before."""
    return _free_run(count)
