"""The HTTP tier: a FastAPI app built in its lifespan, holding no state between requests."""
