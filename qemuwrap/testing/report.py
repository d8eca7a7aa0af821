"""The figures of a harness run, and the text a person reads.

Outcomes of one definition (``result["outcome"]``): ``alike`` (both booted, no
difference), ``different``, ``boot-failed`` (either QEMU did not report),
``qemuwrap-refused`` (libvirt translates, qemuwrap does not), ``libvirt-refused``,
``both-refused``, ``qemuwrap-only`` (libvirt refuses but qemuwrap accepts: qemuwrap
must refuse these too), ``unreadable`` (not a definition).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, and the groups of refusals and differences (definitions per group)."""
    outcomes = Counter(r["outcome"] for r in results)
    translatable = [r for r in results if r["libvirt"] and r["libvirt"]["ok"]]
    accepted = [r for r in translatable if r["qemuwrap"] and r["qemuwrap"]["ok"]]
    refusals: dict[str, list[str]] = defaultdict(list)
    for r in translatable:
        if not r["qemuwrap"]["ok"]:
            for group in sorted(set(r["refusal_groups"])):
                refusals[group].append(r["name"])
    differences: dict[str, list[str]] = defaultdict(list)
    for r in results:
        for group in sorted({d["category"] + ": " + d["text"] for d in r["differences"]}):
            differences[group].append(r["name"])
    categories: Counter[str] = Counter()
    for r in results:
        for cat in {d["category"] for d in r["differences"]}:
            categories[cat] += 1
    return {
        "definitions": len(results),
        "translatable": len(translatable),
        "libvirt_refused": len(results) - len(translatable) - outcomes["unreadable"],
        "libvirt_crashed": sorted(r["name"] for r in results
                                  if r["libvirt"] and r["libvirt"].get("crashed")),
        "accepted": len(accepted),
        "accepted_pct": pct(len(accepted), len(translatable)),
        "alike": outcomes["alike"],
        "alike_pct": pct(outcomes["alike"], len(accepted)),
        "different": outcomes["different"],
        "boot_failed": outcomes["boot-failed"],
        "qemuwrap_only": sorted(r["name"] for r in results if r["outcome"] == "qemuwrap-only"),
        "unreadable": outcomes["unreadable"],
        "outcomes": dict(outcomes),
        "refusals": dict(sorted(refusals.items(), key=lambda kv: (-len(kv[1]), kv[0]))),
        "difference_categories": dict(categories.most_common()),
        "differences": dict(sorted(differences.items(), key=lambda kv: (-len(kv[1]), kv[0]))),
    }


def _examples(names: list[str], limit: int = 4) -> str:
    more = f", … {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def text(results: list[dict[str, Any]], summary: dict[str, Any], *, top: int = 25) -> str:
    """The report: figures first, then every difference and failure."""
    s = summary
    out = [
        f"definitions:                       {s['definitions']}",
        f"translatable by libvirt:           {s['translatable']}"
        f"   (libvirt refuses {s['libvirt_refused']}"
        + (f", of them crashed {len(s['libvirt_crashed'])}: {_examples(s['libvirt_crashed'])}"
           if s["libvirt_crashed"] else "") + ")",
        f"accepted by qemuwrap:              {s['accepted']} of {s['translatable']}"
        f" = {s['accepted_pct']}",
        f"booted alike:                      {s['alike']} of {s['accepted']}"
        f" = {s['alike_pct']}   (different {s['different']}, boot failed "
        f"{s['boot_failed']})",
        f"libvirt refuses, qemuwrap accepts: {len(s['qemuwrap_only'])}"
        + (f"   ({_examples(s['qemuwrap_only'], 10)})" if s["qemuwrap_only"] else ""),
    ]
    if s["unreadable"]:
        out.append(f"not a definition:                  {s['unreadable']}")
    if s["refusals"]:
        out += ["", f"qemuwrap refuses (of the translatable; top {top}, definitions "
                    "per message):"]
        for group, names in list(s["refusals"].items())[:top]:
            out.append(f"  {len(names):4}  {group}   [{_examples(names)}]")
        if len(s["refusals"]) > top:
            out.append(f"        … {len(s['refusals']) - top} more messages (--json)")
    if s["differences"]:
        out += ["", "differences by category (definitions): " + ", ".join(
            f"{cat} {n}" for cat, n in s["difference_categories"].items())]
        out.append(f"most common differences (top {top}):")
        for group, names in list(s["differences"].items())[:top]:
            out.append(f"  {len(names):4}  {group}   [{_examples(names)}]")
    failed = [r for r in results if r["outcome"] == "boot-failed"]
    if failed:
        out += ["", "boot failures:"]
        for r in failed:
            for side in ("libvirt", "qemuwrap"):
                boot = r["boot"].get(side) or {}
                if boot.get("error"):
                    out.append(f"  {r['name']}: {side}: {boot['error']}")
    differing = [r for r in results if r["differences"]]
    if differing:
        out += ["", "every difference:"]
        for r in differing:
            out.append(f"  {r['name']} ({len(r['differences'])}):")
            out += [f"    {_line(d)}" for d in r["differences"]]
    return "\n".join(out) + "\n"


def _line(d: dict[str, str]) -> str:
    return f"{d['category']}: {d['where']}: {d['text']}" if d["where"] else \
        f"{d['category']}: {d['text']}"


def progress(result: dict[str, Any]) -> str:
    """One line per finished definition."""
    outcome = result["outcome"]
    if outcome == "different":
        return f"{result['name']}: {len(result['differences'])} differences"
    if outcome == "qemuwrap-refused":
        return f"{result['name']}: qemuwrap refuses: {result['qemuwrap']['messages'][0]}"
    if outcome == "boot-failed":
        errors = [f"{side}: {b['error']}" for side, b in result["boot"].items()
                  if b and b.get("error")]
        return f"{result['name']}: boot failed: {'; '.join(errors)}"
    return f"{result['name']}: {outcome}"
