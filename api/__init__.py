"""Composition roots: the `chronicle` CLI, the FastAPI app and the worker process."""
