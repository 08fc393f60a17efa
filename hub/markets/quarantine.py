"""Quarantined observations kept and shown, and the operator's decisions on them with an audit trail."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import DecisionConflict, NotFound
from .model import PriceObservation
from .validate import Verdict

# "cleared": the validator itself let the value out on a second look (the day's other reporters came in
# and agreed with it); like "released", it counts as a real price.
PENDING, RELEASED, CONFIRMED, CLEARED = "pending", "released", "confirmed", "cleared"
VALIDATOR = "validator"
ACTIONS = {"release": RELEASED, "confirm": CONFIRMED, "reopen": PENDING}


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """An operator's decision: release (the value is genuine and counts), confirm (it is bad and stays
    out), or reopen (undo either, for a second look)."""

    observation_id: str
    action: str
    by: str
    why: str
    at: int  # hub time, Unix seconds
    state_before: str
    state_after: str
    # An operator's decisions in the order they were made, kept across restarts (the validator's are 0): the
    # audit trail's order within a second, where restored decisions take effect as a refill reaches them.
    order: int = field(default=0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"observation": self.observation_id, "action": self.action, "by": self.by, "why": self.why,
                "at": self.at, "from": self.state_before, "to": self.state_after}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        """A decision as `to_dict` wrote it (kept across restarts)."""
        return cls(observation_id=str(d["observation"]), action=str(d["action"]), by=str(d["by"]),
                   why=str(d["why"]), at=int(d["at"]), state_before=str(d["from"]), state_after=str(d["to"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineEntry:
    observation: PriceObservation
    verdict: Verdict
    quarantined_at: int
    state: str = PENDING

    def to_dict(self) -> dict[str, Any]:
        return {"observation": self.observation.to_dict(), "verdict": self.verdict.to_dict(),
                "quarantined_at": self.quarantined_at, "state": self.state}


class QuarantineStore(Protocol):
    """Where quarantined values and decisions live. The hub persists it; tests use the memory one."""

    def put(self, entry: QuarantineEntry) -> None: ...
    def get(self, observation_id: str) -> QuarantineEntry: ...
    def set_state(self, observation_id: str, state: str, decision: Decision,
                  verdict: Verdict | None = None) -> QuarantineEntry: ...
    def entries(self, state: str | None = None) -> list[QuarantineEntry]: ...
    def count(self, state: str | None = None) -> int:
        """How many `entries(state)` holds, without listing them."""
    def decisions(self, observation_id: str | None = None) -> list[Decision]: ...
    def keep(self, decision: Decision) -> None:
        """Keep a decision on a value not held here (a day kept only as aggregates): for the audit trail."""


class MemoryQuarantineStore:
    def __init__(self) -> None:
        self._entries: dict[str, QuarantineEntry] = {}
        self._states: Counter[str] = Counter()  # entries by state, for `count`
        self._decisions: list[Decision] = []
        self._trails: dict[str, list[Decision]] = {}  # the same decisions by observation

    def put(self, entry: QuarantineEntry) -> None:
        # The same record arriving twice (sync is idempotent) keeps its first entry and its decisions.
        if entry.observation.id not in self._entries:
            self._entries[entry.observation.id] = entry
            self._states[entry.state] += 1

    def get(self, observation_id: str) -> QuarantineEntry:
        try:
            return self._entries[observation_id]
        except KeyError:
            raise NotFound(f"quarantined observation {observation_id!r}: not in quarantine",
                           hint="list GET quarantine for the ids held") from None

    def set_state(self, observation_id: str, state: str, decision: Decision,
                  verdict: Verdict | None = None) -> QuarantineEntry:
        old = self.get(observation_id)
        new = QuarantineEntry(observation=old.observation, verdict=verdict or old.verdict,
                              quarantined_at=old.quarantined_at, state=state)
        self._entries[observation_id] = new
        self._states[old.state] -= 1
        self._states[state] += 1
        self.keep(decision)
        return new

    def entries(self, state: str | None = None) -> list[QuarantineEntry]:
        return [e for e in self._entries.values() if state is None or e.state == state]

    def count(self, state: str | None = None) -> int:
        return len(self._entries) if state is None else self._states[state]

    def decisions(self, observation_id: str | None = None) -> list[Decision]:
        if observation_id is None:
            return list(self._decisions)
        return list(self._trails.get(observation_id, ()))

    def keep(self, decision: Decision) -> None:
        self._decisions.append(decision)
        self._trails.setdefault(decision.observation_id, []).append(decision)


class Quarantine:
    """Quarantine workflow over a store: hold, decide with who/when/why, list the audit trail."""

    def __init__(self, store: QuarantineStore | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store: QuarantineStore = store if store is not None else MemoryQuarantineStore()
        self.clock = clock
        self.made = 0  # operator decisions made or restored: the next one's `order` follows

    def hold(self, observation: PriceObservation, verdict: Verdict) -> QuarantineEntry:
        entry = QuarantineEntry(observation=observation, verdict=verdict, quarantined_at=int(self.clock()))
        self.store.put(entry)
        return self.store.get(observation.id)

    def decide(self, observation_id: str, action: str, *, by: str, why: str,
               record: Callable[[Decision], None] | None = None) -> Decision:
        """Check and make an operator's decision. `record` (to keep it) is called before the decision takes
        effect: if it raises, nothing changes."""
        if action not in ACTIONS:
            raise DecisionConflict(f"action: expected one of {sorted(ACTIONS)}, got {action!r}")
        if not by.strip() or not why.strip():
            raise DecisionConflict("decision: expected who decided (by) and why, got an empty value",
                                   hint="an audit trail needs both the operator and the reason")
        entry = self.store.get(observation_id)
        target = ACTIONS[action]
        if action == "reopen" and entry.state == PENDING:
            raise DecisionConflict(f"reopen {observation_id}: expected a released or confirmed value, "
                                   f"found it pending")
        if action != "reopen" and entry.state != PENDING:
            raise DecisionConflict(f"{action} {observation_id}: expected a pending value, found it "
                                   f"{entry.state}", hint="reopen it first to change the decision")
        decision = Decision(observation_id=observation_id, action=action, by=by, why=why,
                            at=int(self.clock()), state_before=entry.state, state_after=target, order=self.made + 1)
        if record is not None:
            record(decision)
        self.made += 1
        self.store.set_state(observation_id, target, decision)
        return decision

    def state_of(self, observation_id: str) -> str | None:
        try:
            return self.store.get(observation_id).state
        except NotFound:
            return None

    def revise(self, observation_id: str, verdict: Verdict) -> bool:
        """The validator's new verdict on a value it held: cleared if it is now accepted, held again if it
        was cleared and is now quarantined, its explanation updated otherwise. Operator decisions stand.
        True when the value's state changed."""
        try:
            entry = self.store.get(observation_id)
        except NotFound:
            return False
        if entry.state in (RELEASED, CONFIRMED):
            return False
        target = PENDING if verdict.quarantined else CLEARED
        if target == entry.state:
            if entry.verdict != verdict:
                self.store.set_state(observation_id, target, Decision(
                    observation_id=observation_id, action="revise", by=VALIDATOR, why=verdict.summary,
                    at=int(self.clock()), state_before=entry.state, state_after=target), verdict)
            return False
        self.store.set_state(observation_id, target, Decision(
            observation_id=observation_id, action="clear" if target == CLEARED else "hold", by=VALIDATOR,
            why=verdict.summary, at=int(self.clock()), state_before=entry.state, state_after=target), verdict)
        return True

    def pending(self) -> list[QuarantineEntry]:
        return self.store.entries(PENDING)

    def audit(self, observation_id: str | None = None) -> list[Decision]:
        """Decisions in the order of their time, and within a second the validator's first, then the operators'
        in the order they were made (decisions restored after a restart take effect as a refill reaches their
        observations, not in that order)."""
        return sorted(self.store.decisions(observation_id), key=lambda d: (d.at, d.order))
