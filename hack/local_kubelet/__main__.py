"""`local-kubelet`: run the local kubelet until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from local_kubelet import kubelet
from local_kubelet.config import Settings


async def _run(settings: Settings) -> None:
    task = asyncio.create_task(kubelet.main(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("stopped")


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = Settings()  # required fields come from the environment
    asyncio.run(_run(settings))


if __name__ == "__main__":
    main()
