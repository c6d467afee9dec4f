"""The nemesis's checker: each rule passes a clean history and fails the history that breaks it."""

from datetime import UTC, datetime, timedelta

from tools.checker import (
    History,
    answer_violations,
    check,
    dead_letter_violations,
    ledger_violations,
    leftover_violations,
    quota_violations,
    unfinished_violations,
)
from tools.workload import Answer

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def accepted(task_id: str) -> Answer:
    return Answer(0.0, 0.1, 202, {"task_id": task_id})


def test_a_clean_history_breaks_no_rule():
    history = History(answers=[accepted("a"), Answer(1.0, 1.1, 503, {"error": "broker unavailable"}, "5"),
                               Answer(2.0, 2.1, 429, {"error": "slow down"}, "30")],
                      states={"a": "SUCCESS"}, grants=[(T0, 500), (T0 + timedelta(seconds=61), 500)],
                      quota_limits={"minute": 600, "hour": 5000, "day": 10000},
                      dead_letters={"p"}, poison={"p"}, crash_rows={"p"})
    assert check(history) == []


def test_a_5xx_other_than_503_and_a_503_without_retry_after_are_violations():
    found = answer_violations([Answer(0, 1, 500, {"error": "boom"}), Answer(0, 1, 503, {"error": "away"}),
                               Answer(0, 1, 0, {"error": "connection reset"}), Answer(0, 1, 404, {})])
    assert [v.rule for v in found] == ["no 5xx but a 503", "503 with Retry-After", "no 5xx but a 503",
                                       "no 5xx but a 503"]


def test_a_202_that_never_ends_is_a_violation():
    found = unfinished_violations([accepted("a"), accepted("b"), accepted("c")],
                                  {"a": "SUCCESS", "b": "RETRY"})
    assert [v.detail for v in found] == ["task b is RETRY", "task c is unknown to the result backend"]


def test_a_unit_applied_twice_is_a_violation():
    found = ledger_violations({("reading", "7@2026-12-03T12:00:00Z"): 2})
    assert [v.detail for v in found] == ["reading 7@2026-12-03T12:00:00Z applied 2 times"]


def test_more_than_the_quota_in_any_sliding_window_is_a_violation():
    grants = [(T0, 400), (T0 + timedelta(seconds=59), 201)]
    assert [v.detail for v in quota_violations(grants, {"minute": 600})] == ["601 locations in one minute, limit 600"]
    assert quota_violations(grants, {"minute": 0}) == [], "0 lifts the limit"
    assert quota_violations(grants, {"hour": 600}) != []


def test_claims_crash_rows_and_unfinished_runs_left_behind_are_violations():
    history = History(pending_claims=1, crash_rows={"x", "p"}, poison={"p"}, unfinished_runs={3: 2})
    assert [v.rule for v in leftover_violations(history)] == ["no claim left", "no crash row left",
                                                             "every run finishes"]


def test_dead_letters_must_be_exactly_the_poison_sent():
    assert [v.detail for v in dead_letter_violations({"p", "x"}, {"p", "q"})] == [
        "task x was dead-lettered", "poison task q never reached the dead letters"]
