"""The read models: each a projection (``projections.runner.contract.Projection``) that keeps
tables of its own current, read through views that show its live generation only.

- ``agents``: the agent registry (status, capabilities, last seen, current task)
- ``tasks``: the task board (every task by tenant, status, queue and priority)
- ``conversations``: conversation history (one row per message, in order)
- ``runs``: training runs and their epochs per attempt
- ``audit``: the audit index (one row per event; queried by ``projections.audit``)
- ``rows``: the shared mechanics of a projection whose rows are folded per key
- ``pages``: keyset pages over a model's view, for the read functions beside each model
"""
