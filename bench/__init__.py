"""Benchmarks: each measures Chronicle and a raw-asyncpg ceiling in the same run."""
