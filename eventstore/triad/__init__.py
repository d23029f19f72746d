"""Adapters of the training loop's ports (``core.triad.ports``).

- ``emission``: the step thread's event buffer and the asyncio flusher that drains it into the
  event log and a metrics sink (the ``EventSink`` port)
- ``checkpoints``: checksummed checkpoint files, fsynced, and the background thread that writes
  them once the log holds their epoch's events (the ``Checkpoints`` port)
"""
