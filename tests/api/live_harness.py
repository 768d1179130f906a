"""What the live-mode tests share: a served cluster on loopback addresses of its own, and one
address counter for every test module, so no two clusters of a test run share an address."""

from __future__ import annotations

import asyncio
import itertools
import os

from api.live import LiveCluster

_bases = itertools.count(1)


def address_base() -> str:
    """A loopback address range not used by any other cluster of this test run."""
    n = next(_bases)
    return f"127.{100 + (os.getpid() + n // 250) % 100}.{n % 250}.11"


def served(cluster, test, **kw):
    """Serve ``cluster`` live, run ``await test(live)`` and stop; its result is returned."""
    live = LiveCluster(cluster, address_base=kw.pop("address_base", None) or address_base(), control_port=0, **kw)

    async def main():
        await live.start()
        try:
            return await test(live)
        finally:
            await live.stop()

    return asyncio.run(main())
