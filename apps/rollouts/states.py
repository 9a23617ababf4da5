"""The rollout state machine: the one table of allowed transitions, and who may cause them."""

from .models import Rollout

S = Rollout.State

# state → {next state: the actions (service verbs) that may take it there}
TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {
    S.DRAFT: {S.AWAITING_APPROVAL: frozenset({"submit"}), S.SCHEDULED: frozenset({"submit"}),
              S.ABORTED: frozenset({"abort"})},
    S.AWAITING_APPROVAL: {S.SCHEDULED: frozenset({"approve"}), S.ABORTED: frozenset({"abort"})},
    S.SCHEDULED: {S.RUNNING: frozenset({"start"}), S.ABORTED: frozenset({"abort"})},
    S.RUNNING: {S.PAUSED: frozenset({"pause", "freeze"}), S.HALTED: frozenset({"halt"}),
                S.COMPLETED: frozenset({"complete"}), S.ABORTED: frozenset({"abort"})},
    # A paused rollout still has devices installing: a spike among them still halts it.
    S.PAUSED: {S.RUNNING: frozenset({"resume", "unfreeze"}), S.HALTED: frozenset({"halt"}),
               S.ABORTED: frozenset({"abort"})},
    S.HALTED: {S.RUNNING: frozenset({"resume"}), S.ABORTED: frozenset({"abort"})},
    S.COMPLETED: {},
    S.ABORTED: {},
}


def can_transition(current: str, target: str, action: str | None = None) -> bool:
    actions = TRANSITIONS.get(current, {}).get(target)
    return actions is not None and (action is None or action in actions)


def allowed_targets(current: str) -> list[str]:
    return sorted(TRANSITIONS.get(current, {}))
