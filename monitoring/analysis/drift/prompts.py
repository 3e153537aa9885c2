"""Prompt drift a person can read: which terms rose or fell, and the prompts typical of what moved.

The prompt space's detectors say *that* prompts moved; this says *how*: tf-idf (scikit-learn's
``TfidfVectorizer``, fitted on baseline + window prompts) averaged over each side gives every
term's weight before and after, ranked by the change, with the share of prompts containing it.
The clusters the prompt-space ClusterJSD found gained or lost are shown by their most typical
members (closest to the cluster centre): window prompts for a gained cluster, baseline prompts
for a lost one. Needs prompt text (``CAPTURE_PROMPT_TEXT=1``); without it, only hashes exist and
the explanation says so.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

N_TERMS = 8
N_PROMPTS = 5


def _texts(values: Sequence[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str) and v.strip()]


def term_shift(baseline_texts: Sequence[str], window_texts: Sequence[str], n_terms: int = N_TERMS) -> dict[str, list[dict[str, Any]]]:
    """Terms whose mean tf-idf weight rose / fell most from the baseline to the window."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        M = vec.fit_transform(list(baseline_texts) + list(window_texts))
    except ValueError:  # nothing but stop words
        return {"rose": [], "fell": []}
    nb = len(baseline_texts)
    B, W = M[:nb], M[nb:]
    mb, mw = np.asarray(B.mean(axis=0)).ravel(), np.asarray(W.mean(axis=0)).ravel()
    sb, sw = np.asarray((B > 0).mean(axis=0)).ravel(), np.asarray((W > 0).mean(axis=0)).ravel()
    delta = mw - mb
    terms = vec.get_feature_names_out()

    def row(i: int) -> dict[str, Any]:
        return {"term": str(terms[i]), "baseline_share": float(sb[i]), "window_share": float(sw[i]),
                "baseline_weight": float(mb[i]), "window_weight": float(mw[i]), "delta": float(delta[i])}

    order = np.argsort(-delta, kind="stable")
    rose = [row(i) for i in order[:n_terms] if delta[i] > 0]
    fell = [row(i) for i in order[::-1][:n_terms] if delta[i] < 0]
    return {"rose": rose, "fell": fell}


def _distinct(texts: Sequence[Any], limit: int) -> list[str]:
    out: list[str] = []
    for t in texts:
        if isinstance(t, str) and t not in out:
            out.append(t)
        if len(out) >= limit:
            break
    return out


def prompt_shift(
    baseline_texts: Sequence[Any],
    window_texts: Sequence[Any],
    *,
    cluster_detector: Any = None,
    X_baseline: np.ndarray | None = None,
    X_window: np.ndarray | None = None,
    baseline_hashes: Sequence[Any] | None = None,
    window_hashes: Sequence[Any] | None = None,
    n_terms: int = N_TERMS,
    n_prompts: int = N_PROMPTS,
) -> dict[str, Any]:
    """Explain a prompt-space window: term shifts and typical prompts of the clusters that moved.

    Args:
        baseline_texts / window_texts: prompt text per row (None where not captured), aligned
            with ``X_baseline`` / ``X_window`` when those are given.
        cluster_detector: the prompt space's fitted :class:`~monitoring.analysis.drift.cluster.ClusterJSD`
            (optional): its clusters pick the typical prompts.
        baseline_hashes / window_hashes: ``prompt_hash`` per row, used when there is no text
            (``new_prompts_share`` and the new prompts that repeat, by hash).

    Returns a JSON-able dict: ``available`` (False without prompt text, with ``reason``),
    ``terms_rose`` / ``terms_fell`` (term, baseline/window share of prompts containing it, mean
    tf-idf weights, delta), ``clusters`` (cluster, direction, baseline/window share,
    ``typical_prompts``), and ``new_prompts_share`` (window prompts never seen in the baseline).
    """
    bt, wt = _texts(baseline_texts), _texts(window_texts)
    out: dict[str, Any] = {"n_baseline_texts": len(bt), "n_window_texts": len(wt)}
    if not bt or not wt:
        side = "baseline" if not bt else "window"
        out.update(available=False, reason=f"no prompt text in the {side} (capture it with CAPTURE_PROMPT_TEXT=1)",
                   terms_rose=[], terms_fell=[], clusters=[])
        bh, wh = _texts(baseline_hashes or []), _texts(window_hashes or [])
        if bh and wh:  # privacy mode: hashes still say how many prompts are new and which repeat
            seen_h = set(bh)
            new = [h for h in wh if h not in seen_h]
            out["new_prompts_share"] = len(new) / len(wh)
            counts: dict[str, int] = {}
            for h in new:
                counts[h] = counts.get(h, 0) + 1
            out["top_new_prompt_hashes"] = [{"prompt_hash": h, "count": c}
                                            for h, c in sorted(counts.items(), key=lambda t: -t[1])[:n_prompts] if c > 1]
        return out
    terms = term_shift(bt, wt, n_terms)
    seen = set(bt)
    out.update(available=True, terms_rose=terms["rose"], terms_fell=terms["fell"],
               new_prompts_share=float(np.mean([t not in seen for t in wt])), clusters=[])
    if cluster_detector is not None and X_baseline is not None and X_window is not None and len(X_window):
        lb, db = cluster_detector.assign(np.asarray(X_baseline, np.float64))
        lw, dw = cluster_detector.assign(np.asarray(X_window, np.float64))
        k = cluster_detector.baseline_share_.size
        sb = np.bincount(lb, minlength=k) / max(lb.size, 1)
        sw = np.bincount(lw, minlength=k) / max(lw.size, 1)
        delta = sw - sb
        for c in np.argsort(-np.abs(delta), kind="stable")[:3]:
            if abs(delta[c]) < 0.05:
                break
            gained = delta[c] > 0
            labels, dist, texts = (lw, dw, list(window_texts)) if gained else (lb, db, list(baseline_texts))
            members = np.flatnonzero(labels == c)
            members = members[np.argsort(dist[members], kind="stable")]
            out["clusters"].append({"cluster": int(c), "direction": "gained" if gained else "lost",
                                    "baseline_share": float(sb[c]), "window_share": float(sw[c]), "delta": float(delta[c]),
                                    "typical_prompts": _distinct([texts[i] for i in members], n_prompts)})
    return out


def describe_prompt_shift(expl: dict[str, Any], n_terms: int = 4) -> str:
    """One line: ``prompts: +dragon +castle -cat -kitten; e.g. "a dragon over a castle"``."""
    if not expl.get("available"):
        return expl.get("reason", "")
    rose = " ".join("+" + t["term"] for t in expl.get("terms_rose", [])[:n_terms])
    fell = " ".join("-" + t["term"] for t in expl.get("terms_fell", [])[:n_terms])
    gained = [c for c in expl.get("clusters", []) if c["direction"] == "gained" and c["typical_prompts"]]
    eg = f'; e.g. "{gained[0]["typical_prompts"][0]}"' if gained else ""
    return ("prompts: " + " ".join(x for x in (rose, fell) if x) + eg).strip()
