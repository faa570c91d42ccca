"""The benchmark's arithmetic and verdicts: percentiles, ratios, targets, the table.

Benchmarks are never timed here; these check that a run's numbers are turned into the
right met / NOT MET / not available, so a regression cannot hide behind a wrong verdict.
"""

import json

import pytest

from bench.load import lanes_per_client
from bench.report import (
    BASELINE_ECHO,
    BASELINE_SQL,
    BASELINE_SQLALCHEMY,
    MET,
    NOT_AVAILABLE,
    NOT_MET,
    TARGETS,
    BalanceCheck,
    CpuUsage,
    ScenarioResult,
    Target,
    document,
    evaluate,
    evaluate_all,
    measured,
    percentile,
    ratio,
    render,
)

CPU = CpuUsage(server=0.9, clients=0.4, postgres=0.5, other=0.1)


def result(name: str, per_second: float, p99_ms: float = 10.0, **extra) -> ScenarioResult:
    """A 10-second run at ``per_second`` whose slowest 2 % (so its p99) take ``p99_ms``."""
    calls = int(per_second * 10)
    latencies = sorted([1.0] * (calls - calls // 50) + [p99_ms] * (calls // 50))
    return measured(name, seconds=10, codes={"OK": calls}, latencies_ms=latencies, cpu=CPU, **extra)


def test_percentiles_are_nearest_rank():
    samples = [float(n) for n in range(1, 101)]
    assert [percentile(samples, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 0) == 1.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_a_run_counts_successes_only_and_lists_errors_by_code():
    run = measured(
        "points.Redeem.many",
        seconds=4,
        codes={"OK": 400, "ABORTED": 3, "DEADLINE_EXCEEDED": 1},
        latencies_ms=sorted(float(n) for n in range(1, 401)),
        cpu=CPU,
    )
    assert (run.throughput, run.ok) == (100, 400)
    assert run.errors == {"ABORTED": 3, "DEADLINE_EXCEEDED": 1}
    assert run.latency is not None
    assert (run.latency.p50_ms, run.latency.p99_ms, run.latency.max_ms) == (200, 396, 400)


def test_a_run_without_successes_has_no_latency():
    run = measured("x", seconds=1, codes={"UNAVAILABLE": 5}, latencies_ms=[], cpu=CPU)
    assert (run.throughput, run.latency) == (0, None)


def test_ratios_need_a_baseline_that_ran():
    sql = result(BASELINE_SQL, 2000)
    assert ratio(result("points.Redeem.many", 1500), sql) == pytest.approx(0.75)
    assert ratio(result("points.Redeem.many", 1500), None) is None
    assert ratio(result("a", 1), ScenarioResult(BASELINE_SQL, unavailable="down")) is None


EARN = Target(
    "points.EarnForOrder", "issue 4", min_throughput=1200, min_ratio_to_sql=0.6, max_p99_ms=25
)


def test_every_criterion_must_hold_for_a_target_to_be_met():
    sql = result(BASELINE_SQL, 2000)
    assert evaluate(EARN, result("points.EarnForOrder", 1300, p99_ms=20), sql).status == MET
    slow_tail = evaluate(EARN, result("points.EarnForOrder", 1300, p99_ms=30), sql)
    assert slow_tail.status == NOT_MET
    assert [c.met for c in slow_tail.criteria] == [True, True, False]
    # 1,300/s is enough on its own but not next to a 2,500/s baseline (0.52x).
    relative = evaluate(
        EARN, result("points.EarnForOrder", 1300, p99_ms=20), result(BASELINE_SQL, 2500)
    )
    assert [c.met for c in relative.criteria] == [True, False, True]
    assert relative.criteria[1].measured == "0.52x"


def test_a_ratio_target_without_its_baseline_is_not_met():
    verdict = evaluate(EARN, result("points.EarnForOrder", 5000, p99_ms=1), None)
    assert verdict.status == NOT_MET
    assert verdict.criteria[1].measured == "no baseline"


def test_a_hot_account_must_end_exact():
    hot = Target("points.Redeem.hot", "issue 4", min_throughput=800, exact_balance=True)
    exact = BalanceCheck(initial=10_000, redeemed=9_001, final=999)
    assert evaluate(hot, result("points.Redeem.hot", 900, balance=exact), None).status == MET
    lost = BalanceCheck(initial=10_000, redeemed=9_001, final=1_000)
    verdict = evaluate(hot, result("points.Redeem.hot", 900, balance=lost), None)
    assert verdict.status == NOT_MET
    assert verdict.criteria[1].measured == "10,000 - 9,001 = 999, found 1,000"
    unchecked = evaluate(hot, result("points.Redeem.hot", 900), None)
    assert unchecked.criteria[1].measured == "not checked"
    assert unchecked.status == NOT_MET


def test_a_scenario_that_could_not_run_is_reported_not_available():
    missing = ScenarioResult(
        "points.EarnForOrder", unavailable="EarnForOrder is not implemented yet."
    )
    verdict = evaluate(EARN, missing, result(BASELINE_SQL, 2000))
    assert (verdict.status, verdict.criteria) == (NOT_AVAILABLE, ())


def test_targets_are_checked_only_for_scenarios_in_the_run():
    verdicts = evaluate_all([result(BASELINE_SQL, 2000), result("points.GetBalance", 3100)])
    assert list(verdicts) == ["points.GetBalance"]
    assert verdicts["points.GetBalance"].status == MET


def test_the_points_targets_are_those_of_issue_4():
    by_scenario = {target.scenario: target for target in TARGETS}
    assert by_scenario["points.EarnForOrder"] == EARN
    assert by_scenario["points.Redeem.hot"].min_throughput == 800
    assert by_scenario["points.Redeem.hot"].exact_balance
    assert by_scenario["points.GetBalance"].min_throughput == 3000


def a_run() -> list[ScenarioResult]:
    return [
        result(BASELINE_ECHO, 8000),
        result(BASELINE_SQL, 2000),
        result(BASELINE_SQLALCHEMY, 1000),
        result("points.GetBalance", 2500),
        result("points.Redeem.hot", 900, balance=BalanceCheck(10_000, 9_001, 999)),
        ScenarioResult("points.EarnForOrder", unavailable="EarnForOrder is not implemented yet."),
    ]


def test_the_table_shows_numbers_ratios_and_every_verdict():
    results = a_run()
    table = render(results, evaluate_all(results))
    lines = table.splitlines()
    get_balance = next(line for line in lines if line.startswith("points.GetBalance "))
    # name, calls/s, p50, p95, p99, errors, x sql, x sqla, x echo
    assert get_balance.split()[:9] == [
        "points.GetBalance",
        "2,500",
        "1.0",
        "1.0",
        "10.0",
        "0",
        "1.25",
        "2.50",
        "0.31",
    ]
    assert "points.EarnForOrder  not available: EarnForOrder is not implemented yet." in lines
    assert "points.Redeem.hot balance exact: 10,000 - 9,001 = 999, found 999" in lines
    assert lines[-1] == "targets: 1 met, 1 NOT MET, 1 not available"


def test_a_scenario_that_shared_the_machine_is_flagged():
    shared = CpuUsage(server=0.5, clients=0.2, postgres=0.2, other=0.8)
    run = measured("baseline_sql", seconds=1, codes={"OK": 5}, latencies_ms=[1.0] * 5, cpu=shared)
    assert "WARNING: something else used over 0.3 cores during baseline_sql" in render([run], {})


def test_the_json_document_holds_ratios_and_verdicts():
    results = a_run()
    content = json.loads(
        json.dumps(
            document(
                machine={"cpu_count": 2},
                settings={},
                results=results,
                verdicts=evaluate_all(results),
            )
        )
    )
    by_name = {entry["name"]: entry for entry in content["scenarios"]}
    assert by_name["points.GetBalance"]["ratio_to_baseline_sql"] == pytest.approx(1.25)
    assert by_name["points.GetBalance"]["ratio_to_baseline_sqlalchemy"] == pytest.approx(2.5)
    assert by_name["points.GetBalance"]["target"]["status"] == NOT_MET
    assert by_name["points.Redeem.hot"]["balance"]["exact"] is True
    assert by_name["points.EarnForOrder"]["target"]["status"] == NOT_AVAILABLE
    assert by_name[BASELINE_ECHO]["latency"]["p99_ms"] == 10.0
    assert content["machine"] == {"cpu_count": 2}


@pytest.mark.parametrize(
    ("concurrency", "clients", "lanes"),
    [(64, 3, [22, 21, 21]), (64, 4, [16, 16, 16, 16]), (2, 3, [1, 1]), (1, 1, [1])],
)
def test_concurrency_is_split_evenly_over_the_clients(concurrency, clients, lanes):
    assert lanes_per_client(concurrency, clients) == lanes
