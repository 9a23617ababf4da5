"""Certifications and budgets: admin only, validated, audited; the certification selector and overview numbers."""

import pytest

from apps.audit.models import AuditEntry
from apps.governance.models import CertifiedCombination, CombinationBudget
from apps.governance.patterns import combination_matches, parse_patterns
from apps.governance.selectors import live_combinations, uncertified_summary
from apps.governance.services import (
    GovernanceError,
    budget_set,
    certified_combination_create,
    certified_combination_delete,
)

from .conftest import explicit_cohort, make_devices


def test_it_matches_exact_wildcard_and_unnamed_components():
    assert combination_matches({"os": "39.*"}, {"os": "39.2", "app": "1.0"})
    assert not combination_matches({"os": "39.*"}, {"os": "40.0"})
    assert combination_matches({"os": "39.2", "app": "*"}, {"os": "39.2"})
    assert not combination_matches({"app": "1.4"}, {"os": "39.2"})  # app not installed
    assert not combination_matches({"app": "1.4"}, {"app": "1.4.1"})
    assert combination_matches({"app": "1.4*"}, {"app": "1.4.1"})


def test_it_names_the_bad_pattern():
    patterns, errors = parse_patterns("os=39.*, app")
    assert patterns == {"os": "39.*"}
    assert errors == ["'app': write component=version"]
    assert parse_patterns("OS=1")[1][0].startswith("'OS' is not a component name")


def test_it_certifies_and_withdraws_with_audit(admin_user):
    certified = certified_combination_create(patterns="os=39.*, app=1.4.2", note="regression suite 12", actor=admin_user)
    assert certified.patterns == {"os": "39.*", "app": "1.4.2"}
    entry = AuditEntry.objects.get(action="governance.certify")
    assert entry.after == {"patterns": {"os": "39.*", "app": "1.4.2"}} and entry.reason == "regression suite 12"
    certified_combination_delete(certified=certified, actor=admin_user, reason="app 1.4.2 pulled")
    assert not CertifiedCombination.objects.exists()
    assert AuditEntry.objects.get(action="governance.uncertify").before["patterns"] == {"os": "39.*", "app": "1.4.2"}


def test_it_refuses_operators_and_bad_patterns(admin_user, operator_user):
    with pytest.raises(GovernanceError, match="only an admin"):
        certified_combination_create(patterns="os=39.*", actor=operator_user)
    with pytest.raises(GovernanceError) as exc:
        certified_combination_create(patterns="os=39 2", actor=admin_user)
    assert exc.value.field == "patterns"
    with pytest.raises(GovernanceError, match="only an admin"):
        budget_set(cohort=None, max_combinations=3, actor=operator_user)


def test_it_replaces_a_scopes_budget_and_audits_before_and_after(catalogue, admin_user):
    cohort = explicit_cohort(make_devices(1, {"os": "39.1"}), "lab")
    budget_set(cohort=None, max_combinations=5, actor=admin_user)
    budget_set(cohort=None, max_combinations=4, top_k=2, actor=admin_user)
    budget_set(cohort=cohort, max_outside_share=20, actor=admin_user)
    assert CombinationBudget.objects.count() == 2
    fleet = CombinationBudget.objects.get(cohort=None)
    assert (fleet.max_combinations, fleet.top_k) == (4, 2)
    changed = AuditEntry.objects.filter(action="governance.budget_set").order_by("id")[1]
    assert changed.before["max_combinations"] == 5 and changed.after["max_combinations"] == 4
    with pytest.raises(GovernanceError) as exc:
        budget_set(cohort=None, max_outside_share=120, actor=admin_user)
    assert exc.value.field == "max_outside_share"


def test_it_tells_which_live_combinations_are_certified(catalogue, admin_user):
    make_devices(6, {"os": "39.1", "app": "1.0"})
    make_devices(3, {"os": "39.2", "app": "1.0"})
    make_devices(1, {"os": "40.0", "app": "1.1"})
    certified_combination_create(patterns="os=39.*", actor=admin_user)
    rows = {tuple(r["versions"]): r["certified"] for r in live_combinations()}
    # Versions come in component order (os first: position 0).
    assert rows == {(("os", "39.1"), ("app", "1.0")): True, (("os", "39.2"), ("app", "1.0")): True,
                    (("os", "40.0"), ("app", "1.1")): False}
    summary = uncertified_summary(top=5)
    assert summary["uncertified_devices"] == 1
    assert summary["certified_share"] == pytest.approx(90.0)
    assert [r["versions"] for r in summary["top"]] == [[("os", "40.0"), ("app", "1.1")]]
