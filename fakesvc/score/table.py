"""The report for people: one row overall, one per scenario, kind and service, then the notes."""

from __future__ import annotations

from typing import Any

COUNTS = (("checkouts", "checkouts"), ("faulty", "faulty"), ("healthy", "healthy"), ("detected", "detected"))

SHARES = (
    ("AC@1", "ac@1"),
    ("AC@3", "ac@3"),
    ("Avg@3", "avg@3"),
    ("precision", "detection_precision"),
    ("recall", "detection_recall"),
    ("kind acc", "kind_accuracy"),
)
BREAKDOWNS = (("scenario", "by_scenario"), ("kind", "by_kind"), ("service", "by_service"))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _seconds(lag: dict[str, Any]) -> str:
    if not lag["count"]:
        return "none"
    return f"median {lag['median']:.1f} s, p95 {lag['p95']:.1f} s (of {lag['count']})"


def rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(label, metrics)``: overall first, then each breakdown's groups."""
    found = [("all", report)]
    for label, key in BREAKDOWNS:
        found += [(f"{label} {name}", metrics) for name, metrics in report[key].items()]
    return found


def render(report: dict[str, Any]) -> str:
    """The table, then what was skipped, then ProdSentinel's coverage when it was the source."""
    labelled = rows(report)
    width = max(len(label) for label, _ in labelled)
    columns = [(title, key, str) for title, key in COUNTS] + [(title, key, _share) for title, key in SHARES]
    lines = ["  ".join([" " * width, *(f"{title:>5}" for title, _, _ in columns)])]
    for label, metrics in labelled:
        cells = [f"{shown(metrics[key]):>{max(5, len(title))}}" for title, key, shown in columns]
        lines.append("  ".join([f"{label:<{width}}", *cells]))
    lines.append(
        f"{report['interrupted_skipped']} interrupted, {report.get('harness_skipped', 0)} harness-caused and "
        f"{report.get('incomplete_skipped', 0)} incomplete checkouts not scored; "
        f"{report['unmatched_predictions']} predictions for trace ids not in the truth, not scored"
    )
    coverage = report.get("prodsentinel")
    if coverage is not None:
        lines += [
            f"ProdSentinel: {coverage['incidents_listed']} incidents listed, "
            f"{coverage['traces_with_two_incidents']} traces with two (the latest analysis counts)",
            f"  faulty checkouts with an incident (medium+): {coverage['faulty_with_incident']} "
            f"({_share(coverage['faulty_with_incident_share'])}), of those analysed: {coverage['faulty_analysed']} "
            f"({_share(coverage['faulty_analysed_share'])}); incidents not analysed: {coverage['not_analysed']}",
            f"  incident after the checkout's start: {_seconds(coverage['detection_lag_s'])}",
            f"  analysis after the checkout's end: {_seconds(coverage['analysis_lag_s'])}",
        ]
    return "\n".join(lines)
