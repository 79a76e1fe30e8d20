"""The end-of-fit summary in words: problems, notes, and which checks ran and which did not.

Nothing here knows about Lightning. ``RunSummary`` (``monitor_summary.py``) prints
``summary_text`` once per run from the record ``findings.py`` keeps on the trainer.

Example::

    >>> print(summary_text([Finding("activations", "dead_units", step=40, epoch=0,
    ...                             message="relu1: 30% of channels dead")]))
    lightning-cnnviz: 1 problem(s) in this run:
      - [activations/dead_units] epoch 0, step 40: relu1: 30% of channels dead
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lightning_cnnviz.core.findings import ASIDE, Check, Finding, problems

__all__ = ["summary_text"]


def summary_text(
    findings: Sequence[Finding], checks: Iterable[Check] | None = None, ended: str = ""
) -> str:
    """The end-of-fit console summary: problems, notes, then which checks ran and which did not.

    "No problems found" speaks only for the checks that ran; a run where none ran says so.
    ``ended``: how a fit that did not finish ended, said first ("the fit ended at ...; ").

    Example::

        >>> summary_text([])
        'lightning-cnnviz: no problems found in this run.'
        >>> print(summary_text([Finding("activations", "dead_units", 9, 0, "fc1: 25% silent",
        ...                             severity="note")]))
        lightning-cnnviz: no problems found in this run. 1 note:
          - [activations/dead_units] epoch 0, step 9: fc1: 25% silent
        >>> checks = [Check("ActivationMonitor", "", True),
        ...           Check("OverfittingMonitor", "overfitting", False, "no val data")]
        >>> print(summary_text([], checks))
        lightning-cnnviz: no problems found by the checks that ran.
          Checks that ran: ActivationMonitor.
          Checks that did not run: OverfittingMonitor/overfitting (no val data).
    """
    checks = None if checks is None else list(checks)
    found = problems(findings)
    notes = [f for f in findings if f.severity == "note"]
    noted = f"{len(notes)} note{'s' if len(notes) > 1 else ''}:"
    where = "in this run" if checks is None else "by the checks that ran"
    if found:
        lines = [f"lightning-cnnviz: {ended}{len(found)} problem(s) in this run:"]
        lines += [_line(f) for f in found]
        lines += [noted] if notes else []
    elif checks is not None and not any(c.ran for c in checks):
        lines = [f"lightning-cnnviz: {ended}no check ran in this run, so it cannot say whether "
                 "training went well." + (f" {noted}" if notes else "")]  # fmt: skip
    else:
        lines = [
            f"lightning-cnnviz: {ended}no problems found {where}." + (f" {noted}" if notes else "")
        ]
    lines += [_line(f) for f in notes]
    if checks:
        ran, not_ran = _grouped([c for c in checks if c.ran]), [c for c in checks if not c.ran]
        lines += [f"  Checks that ran: {ran}."] if ran else []
        if not_ran:
            lines.append(f"  Checks that did not run: {_not_ran(not_ran)}.")
    return "\n".join(lines)


def _not_ran(checks: Sequence[Check]) -> str:
    """``Monitor/check, check (why); Other, Another (why)``: each reason said once.

    Monitors that stepped aside for one reason are named together; a reason said before
    is pointed to (a model no monitor can probe keeps most checks from running).

    Example::

        >>> _not_ran([Check("O", "a", False, "no val data"), Check("K", "", False, "no conv"),
        ...           Check("O", "b", False, "no val data"), Check("F", "", False, "no conv")])
        'O/a, b (no val data); K, F (no conv)'
        >>> aside = "stepped aside: unfit"
        >>> _not_ran([Check("F", "", False, aside), Check("O", "a", False, "unfit"),
        ...           Check("O", "b", False, aside)])
        'F (stepped aside: unfit); O/a (as for F); O/b (stepped aside: as for F)'
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for c in checks:
        groups.setdefault((c.source, c.why), []).append(c.name)
    by_reason: dict[str, list[str]] = {}  # a reason -> the monitors stepped aside for it
    told: list[tuple[str, str]] = []
    for (source, why), names in groups.items():
        named = [n for n in names if n]  # "": the monitor as a whole, said by its checks
        if not named and why in by_reason:
            by_reason[why].append(source)
            continue
        if not named:
            by_reason[why] = [source]
        told.append((f"{source}/{', '.join(named)}" if named else source, why))
    said: dict[str, str] = {}  # a reason -> the first check it was said for
    parts = []
    for label, why in told:
        if "/" not in label and why in by_reason:
            label = ", ".join(by_reason[why])
        reason = why.removeprefix(ASIDE)
        if reason in said:  # said before: point to it
            why = f"{why[: len(why) - len(reason)]}as for {said[reason]}"
        elif why:
            said[reason] = label.split(", ")[0]
        parts.append(f"{label} ({why})" if why else label)
    return "; ".join(parts)


def _grouped(checks: Sequence[Check]) -> str:
    """``Monitor (check, check), Other`` from checks that ran."""
    names: dict[str, list[str]] = {}
    for c in checks:
        names.setdefault(c.source, []).extend([c.name] if c.name else [])
    return ", ".join(f"{s} ({', '.join(n)})" if n else s for s, n in names.items())


def _line(f: Finding) -> str:
    text = f.first_line.replace("**", "")
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"  - [{f.source}/{f.kind}] epoch {f.epoch}, step {f.step}: {text}"
