"""Workers: claim tasks from Redis, run their handlers under a lease, record every transition."""
