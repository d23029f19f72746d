"""The read models: each a projection (``projections.runner.contract.Projection``) that keeps
tables of its own current, read through views that show its live generation only.

- ``agents``: the agent registry (status, capabilities, last seen, current task)
- ``rows``: the shared mechanics of a projection whose rows are folded per key
"""
