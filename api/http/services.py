"""What a request needs, built once per process in the app's lifespan (never a module global)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from fastapi import Request
from redis.asyncio import Redis

from eventstore import EventStore
from eventstore.apikeys import KeyRing

__all__ = ["Services", "services"]


@dataclass
class Services:
    store: EventStore
    pool: asyncpg.Pool  # reads of read models, under the tenant's row-level security
    redis: Redis
    keys: KeyRing
    max_lag_seconds: float = 30.0
    tenant_submit_rate: float = 0.0  # submissions a second per tenant across replicas; 0: no limit
    draining: bool = field(default=False)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
