"""Market price intelligence: validation against manipulation, impact, forecasts and early warning.

A new validation check is one class in `checks.py` (it scores a day's rows and explains one row) added to
`ALL_CHECKS`; its family says how it counts in the verdict. Commodities are in `catalog.py`, ceilings with
their regulations in `data/ceilings.json`, bulk imports in `importer.py`, HTTP routes in `routes.py`. README.md
says what the units, stale data and creep rules do and what was measured behind them.
"""

from .ceilings import Ceiling, CeilingTable
from .errors import BadInputFile, BadObservation, BadSeries, BadUnit, DecisionConflict, MarketError, NotFound
from .forecast import Forecast, forecast, forecast_many
from .impact import Impact, ImpactInputs, impact
from .macro import MacroInputs, MacroSeries
from .model import FieldNote, PriceObservation, SensorReading, from_record
from .quarantine import Decision, MemoryQuarantineStore, Quarantine, QuarantineStore
from .sentiment import Lexicon, Sentiment, sentiment
from .service import MarketConfig, MarketService
from .validate import CheckResult, ObservationBatch, ValidationConfig, Validator, Verdict
from .warning import Alert, AlertTracker, alps, ifpa
from .webhooks import Delivery, Redelivery, RetryPolicy, Subscriber, Told, WebhookSender

__all__ = [
    "Alert", "AlertTracker", "BadInputFile", "BadObservation", "BadSeries", "BadUnit", "Ceiling", "CeilingTable",
    "CheckResult", "Decision", "DecisionConflict", "Delivery", "FieldNote", "Forecast", "Impact",
    "ImpactInputs", "Lexicon", "MacroInputs", "MacroSeries", "MarketConfig", "MarketError", "MarketService",
    "MemoryQuarantineStore", "NotFound", "ObservationBatch", "PriceObservation", "Quarantine",
    "QuarantineStore", "Redelivery", "RetryPolicy", "SensorReading", "Sentiment", "Subscriber", "Told", "ValidationConfig", "Validator", "Verdict",
    "WebhookSender", "alps", "forecast", "forecast_many", "from_record", "ifpa", "impact",
    "sentiment",
]
