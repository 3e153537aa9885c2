"""The report's per-space section: each embedding space's verdict, the prompts and terms that
moved, the generation settings that moved, and the output checks.

It renders plain data the scoring run already holds (see docs/drift-workflow.md, "Several
embedding spaces"): ``window["spaces"][space]`` (``n``, ``scored``, ``any_drift``, ``drifted``,
``methods``, and ``prompts`` for the prompt space), ``window["settings"]`` and
``window["outputs"]``. Nothing here computes; the interactive report can render the same keys.
"""

from __future__ import annotations

import html
from typing import Any

from .page import table


def _verdict(drift: bool) -> str:
    return "<span class='drift'>DRIFT</span>" if drift else "<span class='ok'>ok</span>"


def _shares(d: dict[str, float], limit: int = 4) -> str:
    top = sorted(d.items(), key=lambda t: -t[1])[:limit]
    return html.escape(", ".join(f"{k} {v:.0%}" for k, v in top))


def _prompts(p: dict[str, Any]) -> str:
    if not p.get("available"):
        return f"<p class='small'>{html.escape(p.get('reason', 'no prompt text'))}</p>"
    out = []
    rows = [[html.escape(t["term"]), f"{t['baseline_share']:.0%}", f"{t['window_share']:.0%}", f"{t['delta']:+.3f}"]
            for t in p.get("terms_rose", [])[:6]]
    rows += [[html.escape(t["term"]), f"{t['baseline_share']:.0%}", f"{t['window_share']:.0%}", f"{t['delta']:+.3f}"]
             for t in p.get("terms_fell", [])[:6]]
    if rows:
        out.append(table(["term", "prompts with it (baseline)", "(window)", "tf-idf change"], rows))
    for c in p.get("clusters", []):
        side = "window" if c["direction"] == "gained" else "baseline"
        ex = "".join(f"<li>{html.escape(t)}</li>" for t in c["typical_prompts"])
        out.append(f"<p>prompt cluster {c['cluster']} {c['direction']} ({c['baseline_share']:.0%} of baseline, "
                   f"{c['window_share']:.0%} of window); typical {side} prompts:</p><ul>{ex}</ul>")
    out.append(f"<p class='small'>{p.get('new_prompts_share', 0):.0%} of this window's prompts never occur in the baseline.</p>")
    return "".join(out)


def spaces_section(run: Any) -> str:
    """HTML for every scored window with more than one space or generative checks ('' otherwise).
    ``run``: the typed run (a saved run's JSON is read into one)."""
    from monitoring.analysis.scoring.result import MethodScore, as_run

    wins = [w for w in as_run(run).windows if w.scored]
    if not any(len(w.detail("spaces", {})) > 1 or "settings" in w.details or "outputs" in w.details for w in wins):
        return ""
    sec = ["<h2>Embedding spaces, prompts, settings and outputs</h2><p class='small'>Each space (input image, prompt, "
           "output) has its own baseline sample and calibrated detectors; a request counts in the spaces it has "
           "(text2img requests have no input image).</p>"]
    for w in wins:
        rows = []
        for name, sp in w.detail("spaces", {}).items():
            if not sp.get("scored"):
                rows.append([html.escape(name), sp.get("n", 0), "–", html.escape(sp.get("skipped_reason", "not scored"))])
                continue
            mmd = MethodScore.from_json("mmd", sp["methods"]["mmd"]).p_value if "mmd" in sp["methods"] else None
            rows.append([html.escape(name), sp["n"], "–" if mmd is None else f"{mmd:.3f}",
                         _verdict(sp["any_drift"]) + (" " + html.escape(", ".join(sp["drifted"])) if sp["drifted"] else "")])
        m = w.methods
        for k in ("metadata", "settings", "outputs"):
            if k in m:
                rows.append([k, m[k].window_size, "–" if m[k].p_value is None else f"{m[k].p_value:.3g}",
                             _verdict(m[k].is_drift)])
        parts = [f"<h3>{html.escape(w.label)}</h3>", table(["space", "n", "p (MMD / adj.)", "verdict"], rows)]
        prompt = w.detail("spaces", {}).get("prompt", {})
        if prompt.get("prompts") and prompt.get("any_drift"):
            parts.append("<h4>Prompts that moved</h4>" + _prompts(prompt["prompts"]))
        st = w.detail("settings", {})
        moved = [f for f in st.get("fields", []) if f.get("drifted")]
        if moved:
            parts.append("<h4>Generation settings that moved</h4>" + table(
                ["setting", "baseline", "window", "p (adj.)"],
                [[html.escape(f["field"]), _shares(f["baseline"]), _shares(f["window"]), f"{f['p_adjusted']:.2g}"] for f in moved]))
        outp = w.detail("outputs", {})
        if outp.get("checks"):
            parts.append("<h4>Output checks</h4>" + table(
                ["check", "baseline share", "window share", "count", "p (adj.)", ""],
                [[c["check"], "–" if c["baseline_share"] is None else f"{c['baseline_share']:.1%}",
                  "–" if c["window_share"] is None else f"{c['window_share']:.1%}", f"{c['count']}/{c['of']}",
                  f"{c['p_adjusted']:.2g}", _verdict(c["drifted"])] for c in outp["checks"]]
                + [[html.escape(s["field"]), f"median {s['baseline_median']:.3g}", f"median {s['window_median']:.3g}", "–",
                    f"{s['p_adjusted']:.2g}", _verdict(s["drifted"])] for s in outp.get("stats", [])]))
        sec.append("".join(parts))
    return "".join(sec)
