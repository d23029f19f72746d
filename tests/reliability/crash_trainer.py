"""A training run that a test kills with SIGKILL the moment one of its checkpoints appears.

Small epochs (8 steps) and seeds that germinate at once, so that the epochs around the kill
have decisions and seed transitions. The flusher polls every quarter second instead of every
50 ms: a slower flusher widens the window in which a checkpoint could get ahead of the log,
and the guarantee must hold whatever the poll interval.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from api.services.training import run_training
from core.triad.config import RunOptions
from eventstore import EventStore
from eventstore.triad.emission import EmissionConfig
from tests.unit.triad.runs import small_options

RUN_ID = "crash"
EPOCHS = 6
SLOW_FLUSHER = EmissionConfig(poll_interval_s=0.25)


def crash_options() -> RunOptions:
    return replace(small_options(EPOCHS), run_id=RUN_ID)


async def main(url: str, checkpoint_root: str) -> None:
    async with await EventStore.connect(url) as store:
        await run_training(
            crash_options(), event_log=store, checkpoint_root=Path(checkpoint_root), emission=SLOW_FLUSHER
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
