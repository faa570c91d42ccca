"""Numbers, targets and their presentation: pure functions, no I/O.

``TARGETS`` holds every service's performance targets in one place; a service adds its
own next to the points ones. Each target names the scenario it applies to and the
criteria it must meet; ``evaluate`` turns a measured scenario into met / NOT MET (or
"not available" when the scenario could not run), never hiding a target.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

BASELINE_ECHO = "baseline_echo"
BASELINE_SQL = "baseline_sql"  # the floor of a write; every target ratio refers to it
BASELINE_SQLALCHEMY = "baseline_sqlalchemy"  # the same write through the services' stack
# Ratio columns: (baseline, column title, JSON key).
RATIOS = (
    (BASELINE_SQL, "x sql", "ratio_to_baseline_sql"),
    (BASELINE_SQLALCHEMY, "x sqla", "ratio_to_baseline_sqlalchemy"),
    (BASELINE_ECHO, "x echo", "ratio_to_baseline_echo"),
)

# More CPU than this on other work during a scenario, the machine was shared with
# something else: the numbers are lower than this machine's.
BUSY_OTHER_CORES = 0.3

Status = Literal["met", "NOT MET", "not available"]
MET: Final = "met"
NOT_MET: Final = "NOT MET"
NOT_AVAILABLE: Final = "not available"


@dataclass(frozen=True)
class CpuUsage:
    """CPU over the measured window, in cores (CPU seconds per second)."""

    server: float
    clients: float
    postgres: float | None  # None: not the harness's own server, so counted in ``other``
    other: float  # the rest of the machine: the harness, the kernel, anything else running


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class BalanceCheck:
    """A hot account after the run: it must have lost exactly one point per success."""

    initial: int
    redeemed: int  # successful 1-point redeems over the whole run, warm-up included
    final: int

    @property
    def expected(self) -> int:
        return self.initial - self.redeemed

    @property
    def exact(self) -> bool:
        return self.final == self.expected

    def describe(self) -> str:
        return f"{self.initial:,} - {self.redeemed:,} = {self.expected:,}, found {self.final:,}"


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    throughput: float = 0.0  # successful calls per second in the measured window
    ok: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)  # status code name -> count
    latency: Latency | None = None  # of successful calls; None without any
    cpu: CpuUsage | None = None
    balance: BalanceCheck | None = None
    unavailable: str = ""  # why the scenario could not run; empty when it ran

    @property
    def ran(self) -> bool:
        return not self.unavailable


def percentile(sorted_samples: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile: the smallest sample with ``percent`` % at or below it."""
    if not sorted_samples:
        raise ValueError("no samples")
    rank = max(1, math.ceil(percent / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


def measured(
    name: str,
    *,
    seconds: float,
    codes: Mapping[str, int],
    latencies_ms: Sequence[float],
    cpu: CpuUsage,
    balance: BalanceCheck | None = None,
) -> ScenarioResult:
    """The result of a run: ``codes`` counts calls by status, ``latencies_ms`` is sorted."""
    ok = codes.get("OK", 0)
    latency = None
    if latencies_ms:
        latency = Latency(
            p50_ms=percentile(latencies_ms, 50),
            p95_ms=percentile(latencies_ms, 95),
            p99_ms=percentile(latencies_ms, 99),
            mean_ms=sum(latencies_ms) / len(latencies_ms),
            max_ms=latencies_ms[-1],
        )
    return ScenarioResult(
        name=name,
        throughput=ok / seconds,
        ok=ok,
        errors={code: count for code, count in sorted(codes.items()) if code != "OK"},
        latency=latency,
        cpu=cpu,
        balance=balance,
    )


def ratio(result: ScenarioResult, baseline: ScenarioResult | None) -> float | None:
    """Throughput relative to ``baseline``; None when either did not run."""
    if baseline is None or not baseline.ran or baseline.throughput == 0 or not result.ran:
        return None
    return result.throughput / baseline.throughput


# ------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    scenario: str
    source: str  # where the target is set, e.g. "issue 4"
    min_throughput: float | None = None  # successful calls per second
    min_ratio_to_sql: float | None = None  # times the baseline_sql throughput
    max_p99_ms: float | None = None
    exact_balance: bool = False


TARGETS: tuple[Target, ...] = (
    Target(
        "points.EarnForOrder",
        "issue 4",
        min_throughput=1200,
        min_ratio_to_sql=0.6,
        max_p99_ms=25,
    ),
    Target("points.Redeem.hot", "issue 4", min_throughput=800, exact_balance=True),
    Target("points.GetBalance", "issue 4", min_throughput=3000),
)


@dataclass(frozen=True)
class Criterion:
    requirement: str
    measured: str
    met: bool


@dataclass(frozen=True)
class Verdict:
    target: Target
    status: Status
    criteria: tuple[Criterion, ...] = ()


def evaluate(
    target: Target, result: ScenarioResult, baseline_sql: ScenarioResult | None
) -> Verdict:
    if not result.ran:
        return Verdict(target, NOT_AVAILABLE)
    criteria: list[Criterion] = []
    if target.min_throughput is not None:
        criteria.append(
            Criterion(
                f"≥ {target.min_throughput:,.0f}/s",
                f"{result.throughput:,.0f}/s",
                result.throughput >= target.min_throughput,
            )
        )
    if target.min_ratio_to_sql is not None:
        relative = ratio(result, baseline_sql)
        criteria.append(
            Criterion(
                f"≥ {target.min_ratio_to_sql:g}x {BASELINE_SQL}",
                "no baseline" if relative is None else f"{relative:.2f}x",
                relative is not None and relative >= target.min_ratio_to_sql,
            )
        )
    if target.max_p99_ms is not None:
        p99 = result.latency.p99_ms if result.latency else None
        criteria.append(
            Criterion(
                f"p99 ≤ {target.max_p99_ms:g} ms",
                "no successful call" if p99 is None else f"{p99:.1f} ms",
                p99 is not None and p99 <= target.max_p99_ms,
            )
        )
    if target.exact_balance:
        balance = result.balance
        criteria.append(
            Criterion(
                "balance exact",
                "not checked" if balance is None else balance.describe(),
                balance is not None and balance.exact,
            )
        )
    return Verdict(target, MET if all(c.met for c in criteria) else NOT_MET, tuple(criteria))


def evaluate_all(
    results: Iterable[ScenarioResult], targets: Iterable[Target] = TARGETS
) -> dict[str, Verdict]:
    """Verdicts by scenario name, for every target whose scenario was in the run."""
    by_name = {result.name: result for result in results}
    return {
        target.scenario: evaluate(target, by_name[target.scenario], by_name.get(BASELINE_SQL))
        for target in targets
        if target.scenario in by_name
    }


# ------------------------------------------------------------------------ presentation


def render(results: Sequence[ScenarioResult], verdicts: Mapping[str, Verdict]) -> str:
    by_name = {result.name: result for result in results}
    rows: list[tuple[str, ...]] = [
        (
            "scenario",
            "calls/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "errors",
            *(title for _, title, _ in RATIOS),
            "CPU server/clients/pg/other",
        )
    ]
    notes: list[str] = []
    for result in results:
        if not result.ran:
            rows.append((result.name, f"{NOT_AVAILABLE}: {result.unavailable}"))
            continue
        latency = result.latency
        rows.append(
            (
                result.name,
                f"{result.throughput:,.0f}",
                _ms(latency.p50_ms if latency else None),
                _ms(latency.p95_ms if latency else None),
                _ms(latency.p99_ms if latency else None),
                f"{sum(result.errors.values()):,}",
                *(_times(ratio(result, by_name.get(name))) for name, _, _ in RATIOS),
                _cpu(result.cpu),
            )
        )
        if result.errors:
            by_code = ", ".join(f"{code} {count:,}" for code, count in result.errors.items())
            notes.append(f"{result.name} errors: {by_code}")
        if result.balance is not None:
            state = "exact" if result.balance.exact else "WRONG"
            notes.append(f"{result.name} balance {state}: {result.balance.describe()}")
    busy = [r.name for r in results if r.cpu is not None and r.cpu.other > BUSY_OTHER_CORES]
    if busy:
        notes.append(
            f"WARNING: something else used over {BUSY_OTHER_CORES} cores during "
            f"{', '.join(busy)}: those numbers are low; rerun on an idle machine"
        )
    lines = [*_align(rows, left=1), *notes]
    if verdicts:
        lines += ["", *_align(_target_rows(verdicts.values()), left=4)]
        counts = {status: 0 for status in (MET, NOT_MET, NOT_AVAILABLE)}
        for verdict in verdicts.values():
            counts[verdict.status] += 1
        lines.append("targets: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return "\n".join(lines)


def _target_rows(verdicts: Iterable[Verdict]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("target", "requirement", "measured", "result")]
    for verdict in verdicts:
        name = f"{verdict.target.scenario} ({verdict.target.source})"
        if not verdict.criteria:
            rows.append((name, "", "", verdict.status))
        for index, criterion in enumerate(verdict.criteria):
            rows.append(
                (
                    name if index == 0 else "",
                    criterion.requirement,
                    criterion.measured,
                    MET if criterion.met else NOT_MET,
                )
            )
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _cpu(cpu: CpuUsage | None) -> str:
    if cpu is None:
        return "-"
    postgres = "-" if cpu.postgres is None else f"{cpu.postgres:.2f}"
    return f"{cpu.server:.2f} / {cpu.clients:.2f} / {postgres} / {cpu.other:.2f}"


def _align(rows: Sequence[Sequence[str]], *, left: int) -> list[str]:
    """Columns padded to their widest cell, the first ``left`` ones left-aligned and the
    others (numbers) right-aligned; a short row (a note) just runs on."""
    width = max(len(row) for row in rows)
    full = [row for row in rows if len(row) == width]
    widths = [max(len(row[column]) for row in full) for column in range(width)]
    lines = []
    for row in rows:
        if len(row) < width:
            lines.append("  ".join(row).rstrip())
            continue
        cells = [
            cell.ljust(w) if column < left else cell.rjust(w)
            for column, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def document(
    *,
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    results: Sequence[ScenarioResult],
    verdicts: Mapping[str, Verdict],
) -> dict[str, Any]:
    """The JSON written to bench/results/: everything needed to compare runs later."""
    by_name = {result.name: result for result in results}
    scenarios = []
    for result in results:
        entry = asdict(result)
        for name, _, key in RATIOS:
            entry[key] = ratio(result, by_name.get(name))
        if result.balance is not None:
            entry["balance"] |= {"expected": result.balance.expected, "exact": result.balance.exact}
        verdict = verdicts.get(result.name)
        if verdict is not None:
            entry["target"] = {
                **asdict(verdict.target),
                "status": verdict.status,
                "criteria": [asdict(criterion) for criterion in verdict.criteria],
            }
        scenarios.append(entry)
    content: dict[str, Any] = _rounded(
        {"machine": dict(machine), "settings": dict(settings), "scenarios": scenarios}
    )
    return content


def _rounded(value: Any) -> Any:
    """Floats to 3 decimals (microseconds, thousandths of a core): more is noise."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value
