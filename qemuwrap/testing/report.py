"""The figures of a harness run, and the text a person reads.

Outcomes of one definition (``result["outcome"]``): ``alike`` (both booted, no
difference), ``different``, ``boot-failed`` (either QEMU did not report),
``qemuwrap-refused`` (libvirt translates, qemuwrap does not), ``libvirt-refused``,
``both-refused``, ``qemuwrap-only`` (libvirt refuses but qemuwrap accepts: qemuwrap
must refuse these too), ``unreadable`` (not a definition).

The raw figures come first; then the classified ones (``classify``: refusals for
this host only, libvirt's own command failing on this QEMU, boot failures by side,
differences that are the oracle's artifacts), each category with its definitions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from qemuwrap.testing import classify


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
        "classified": classified(results),
    }


def _libvirt_error(r: dict[str, Any]) -> str:
    return (r["boot"].get("libvirt") or {}).get("error") or "no report"


def classified(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures with what is not qemuwrap's doing told apart (``classify``)."""
    translatable = [r for r in results if r["libvirt"] and r["libvirt"]["ok"]]
    accepted = {r["name"] for r in translatable if r["qemuwrap"]["ok"]}
    host_only = {r["name"]: r["qemuwrap"]["messages"][:1] for r in translatable
                 if classify.host_only(r)}
    lv_fails = {r["name"]: _libvirt_error(r) for r in translatable
                if classify.libvirt_starts(r) is False}
    starts = [r["name"] for r in translatable if r["name"] not in lv_fails]
    accepted_s = [n for n in starts if n in accepted]
    with_host = [n for n in starts if n in accepted or n in host_only]
    booted = [r for r in results if r["outcome"] in ("alike", "different")]
    verdicts: dict[str, list[str]] = {k: [] for k in (classify.QEMUWRAP, classify.ARTIFACT,
                                                      classify.UNVERIFIED)}
    reasons: dict[str, list[str]] = defaultdict(list)
    for r in booted:
        if r["outcome"] != "different":
            continue
        classes = r.get("difference_classes") or [classify.QEMUWRAP] * len(r["differences"])
        verdicts[classify.verdict(classes)].append(r["name"])
        for c in sorted(set(classes) - {classify.QEMUWRAP}):
            reasons[c].append(r["name"])
    alike = sum(1 for r in booted if r["outcome"] == "alike")
    alike_or_artifact = alike + len(verdicts[classify.ARTIFACT])
    failures: dict[str, list[str]] = {"both": [], "qemuwrap": [], "libvirt": []}
    for r in results:
        side = classify.boot_failure(r)
        if side:
            failures[side].append(r["name"])
    return {
        "translatable": len(translatable),
        "accepted": len(accepted),
        "accepted_pct": pct(len(accepted), len(translatable)),
        "refused_for_this_host_only": host_only,
        "libvirt_argv_fails_here": lv_fails,
        "libvirt_argv_fails_here_refused_by_qemuwrap": sorted(
            n for n in lv_fails if n not in accepted),
        "translatable_libvirt_starts": len(starts),
        "accepted_libvirt_starts": len(accepted_s),
        "accepted_libvirt_starts_pct": pct(len(accepted_s), len(starts)),
        "accepted_or_host_only_libvirt_starts": len(with_host),
        "accepted_or_host_only_libvirt_starts_pct": pct(len(with_host), len(starts)),
        "alike": alike,
        "alike_of_accepted_pct": pct(alike, len(accepted)),
        "both_booted": len(booted),
        "alike_of_both_booted_pct": pct(alike, len(booted)),
        "alike_or_only_verified_artifacts": alike_or_artifact,
        "alike_or_only_verified_artifacts_pct": pct(alike_or_artifact, len(booted)),
        "different_qemuwrap": verdicts[classify.QEMUWRAP],
        "different_oracle_artifacts_verified": verdicts[classify.ARTIFACT],
        "different_unverified": verdicts[classify.UNVERIFIED],
        "difference_reasons": dict(reasons),
        "boot_failed_both": failures["both"],
        "boot_failed_only_qemuwrap": failures["qemuwrap"],
        "boot_failed_only_libvirt": failures["libvirt"],
    }


def classified_text(c: dict[str, Any]) -> list[str]:
    """The classified figures, then the definitions in each category."""
    n_host, n_lv = len(c["refused_for_this_host_only"]), len(c["libvirt_argv_fails_here"])
    out = [
        "classified (what is not qemuwrap's doing, each with its evidence):",
        f"  accepted / translatable:                      {c['accepted']} of "
        f"{c['translatable']} = {c['accepted_pct']}",
        f"  refused for this host only:                   {n_host}   (qemuwrap translates "
        "them with --no-host-check)",
        f"  libvirt's own argv does not start here:       {n_lv}   (of them qemuwrap "
        f"refuses {len(c['libvirt_argv_fails_here_refused_by_qemuwrap'])})",
        f"  accepted / translatable whose libvirt argv starts here: "
        f"{c['accepted_libvirt_starts']} of {c['translatable_libvirt_starts']} = "
        f"{c['accepted_libvirt_starts_pct']}",
        f"  accepted or refused for this host only / the same:      "
        f"{c['accepted_or_host_only_libvirt_starts']} of {c['translatable_libvirt_starts']}"
        f" = {c['accepted_or_host_only_libvirt_starts_pct']}",
        f"  alike / accepted:                             {c['alike']} of {c['accepted']}"
        f" = {c['alike_of_accepted_pct']}",
        f"  alike / both booted:                          {c['alike']} of "
        f"{c['both_booted']} = {c['alike_of_both_booted_pct']}",
        f"  alike or only verified oracle artifacts / both booted: "
        f"{c['alike_or_only_verified_artifacts']} of {c['both_booted']} = "
        f"{c['alike_or_only_verified_artifacts_pct']}",
        f"  different: qemuwrap's {len(c['different_qemuwrap'])}, oracle artifacts "
        f"(verified) {len(c['different_oracle_artifacts_verified'])}, unverified "
        f"{len(c['different_unverified'])}",
        f"  boot failed: both failed (environment) {len(c['boot_failed_both'])}, only "
        f"qemuwrap failed {len(c['boot_failed_only_qemuwrap'])}, only libvirt failed "
        f"{len(c['boot_failed_only_libvirt'])}",
    ]
    if c["refused_for_this_host_only"]:
        out += ["", "refused for this host only (translates with --no-host-check):"]
        out += [f"  {name}: {(msgs or [''])[0]}"
                for name, msgs in c["refused_for_this_host_only"].items()]
    if c["libvirt_argv_fails_here"]:
        out += ["", "libvirt's own argv does not start on this QEMU either:"]
        out += [f"  {name}: {error}" for name, error in c["libvirt_argv_fails_here"].items()]
    for title, key in (("different: qemuwrap's", "different_qemuwrap"),
                       ("different: oracle artifacts only (verified)",
                        "different_oracle_artifacts_verified"),
                       ("different: unverified (still counted as different)",
                        "different_unverified"),
                       ("boot failed: both failed (environment)", "boot_failed_both"),
                       ("boot failed: only qemuwrap failed", "boot_failed_only_qemuwrap"),
                       ("boot failed: only libvirt failed", "boot_failed_only_libvirt")):
        if c[key]:
            out += ["", f"{title} ({len(c[key])}):", "  " + ", ".join(c[key])]
    if c["difference_reasons"]:
        out += ["", "differences not qemuwrap's, by reason (definitions):"]
        out += [f"  {len(names):4}  {reason}   [{_examples(names, 10)}]"
                for reason, names in c["difference_reasons"].items()]
    return out


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
    out += ["", *classified_text(s["classified"])]
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
            classes = r.get("difference_classes") or [""] * len(r["differences"])
            out.append(f"  {r['name']} ({len(r['differences'])}):")
            out += [f"    {_line(d)}" + (f"   [{c}]" if c and c != classify.QEMUWRAP else "")
                    for d, c in zip(r["differences"], classes, strict=True)]
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
        notes = (["for this host only"] if classify.host_only(result) else []) + (
            ["libvirt's argv does not start here either"]
            if classify.libvirt_starts(result) is False else [])
        return (f"{result['name']}: qemuwrap refuses: {result['qemuwrap']['messages'][0]}"
                + (f" ({'; '.join(notes)})" if notes else ""))
    if outcome == "boot-failed":
        errors = [f"{side}: {b['error']}" for side, b in result["boot"].items()
                  if b and b.get("error")]
        return f"{result['name']}: boot failed: {'; '.join(errors)}"
    return f"{result['name']}: {outcome}"
