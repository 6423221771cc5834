"""HTTP routers, one per file: events, rank, health, metrics."""
