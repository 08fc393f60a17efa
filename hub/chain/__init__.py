"""The chain's dashboard side: each device's log, last arrival and lag from the store, and the chain-health route."""

from .routes import ChainRoutes
from .view import chain_health

__all__ = ["ChainRoutes", "chain_health"]
