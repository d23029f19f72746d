"""The projection runner: read models kept current from the log, each event applied exactly once.

- ``contract``: what a projection is (name, version, the categories it reads, ``apply``)
- ``state``: the SQL of the runner's own tables (``projections``, ``projection_checkpoints``)
- ``batches``: reading the next page of the log, and applying it with its checkpoint
- ``worker``: one projection's live loop
- ``rebuild``: a new generation built beside the live one and swapped in
- ``daemon``: several projections in one process, each owned by one daemon (a lease)
- ``status``: position, lag, owner and failure of every projection
"""
