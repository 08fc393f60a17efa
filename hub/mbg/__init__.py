"""MBG meal distribution and stock analytics: container timelines, deliveries, food safety, stock, EPCIS."""

from .analysis import (
    STAGES,
    ContainerStep,
    ContainerTimeline,
    Delivery,
    Finding,
    FoodSafetyViolation,
    analyze,
)
from .epcis import EpcisIds, event_hash
from .errors import InputError, MbgError, NotFound, PlanError
from .events import ScanEvent, StockMovement, TimeChoice, choose_time, from_record
from .plan import ClockPolicy, FoodSafetyRules, Kitchen, Plan, School, load_plan, plan_from_dict
from .sim import SCENARIOS, SimDay, SimRecord, simulate
from .stock import StockCard, StockLine, replay, stock_cards
from .view import MbgView

__all__ = [
    "SCENARIOS", "STAGES", "ClockPolicy", "ContainerStep", "ContainerTimeline", "Delivery", "EpcisIds", "Finding",
    "FoodSafetyRules", "FoodSafetyViolation", "InputError", "Kitchen", "MbgError", "MbgView", "NotFound", "Plan",
    "PlanError", "ScanEvent", "School", "SimDay", "SimRecord", "StockCard", "StockLine", "StockMovement",
    "TimeChoice", "analyze", "choose_time", "event_hash", "from_record", "load_plan", "plan_from_dict", "replay",
    "simulate", "stock_cards",
]
