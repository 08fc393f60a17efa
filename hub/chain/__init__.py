"""The chain's dashboard side: each device's arrivals and lag (read model) and the chain-health route."""

from .routes import ChainRoutes
from .view import ChainView

__all__ = ["ChainRoutes", "ChainView"]
