"""Redis adapters: the write-through state cache and the training-metrics stream. Every key
they write is built in ``keys``."""
