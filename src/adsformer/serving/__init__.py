"""Online serving (paper sections 4.1, 5.4; SPEC section 4): the ranking service and its parts.

``create_app`` (FastAPI) over a :class:`RankingService`: events stream into an online store of per-user
windowed sequences (Redis, or in-process), ranking requests retrieve candidates, score them with the fast
one-user path of the trained CTR / PCCVR runs, rank by value and price by second price, with a short score
cache and Parquet feature logs. See ``docs/architecture.md`` (the request flow).
"""

from adsformer.serving.app import create_app
from adsformer.serving.outcome import RankQuery
from adsformer.serving.ranking import RankingService
from adsformer.serving.settings import ServingSettings

__all__ = ["RankQuery", "RankingService", "ServingSettings", "create_app"]
