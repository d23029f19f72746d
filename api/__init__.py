"""Composition roots: where settings are read and adapters are built and wired together.

- ``cli``: the ``chronicle`` command (the HTTP app goes in ``http`` and the worker process in
  ``worker``, beside it)
- ``services``: use cases every root shares, built from core's deciders and eventstore's adapters
"""
