"""``python -m monitoring actuals --file labels.csv``."""

from __future__ import annotations

import argparse
import json
import sys

from monitoring.cli import add_store_args, command


def _args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--file", required=True, help="CSV with a header: request_id,label[,model]")
    p.add_argument("--model", action="append", default=None,
                   help="report matches against this model's records (repeatable; default: every model in the store)")
    p.add_argument("--json", action="store_true")


@command("actuals", help="post ground-truth labels (request_id,label CSV); joined to predictions by request id", configure=_args)
def cmd_actuals(args: argparse.Namespace) -> int:
    from monitoring.analysis.actuals.labels import accuracy_of, join_actuals, read_labels_csv, save_actuals
    from monitoring.analysis.artifacts import list_models
    from monitoring.ingest.store.backend import open_backend
    from monitoring.ingest.store.reader import read_records_df

    try:
        labels = read_labels_csv(args.file)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    backend = open_backend(args.store, args.s3_endpoint_url)
    key = save_actuals(backend, labels)
    models = args.model or list_models(backend)
    out = {"file": str(args.file), "labels": int(len(labels)), "stored_as": key, "models": {}}
    matched_any = set()
    for m in models:
        recs = read_records_df(backend, m, columns=["request_id", "model", "pred_label"])
        truth = join_actuals(recs, labels)
        acc, n = accuracy_of(recs["pred_label"], truth)
        matched_any |= set(recs["request_id"][truth.notna()])
        if n or args.model:
            out["models"][m] = {"matched": n, "records": int(len(recs)), "accuracy": acc}
    out["matched"] = len(matched_any)
    out["unmatched"] = int(len(labels)) - len(matched_any)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"stored {out['labels']} labels ({key})")
    print(f"matched {out['matched']} of {out['labels']} to captured predictions"
          + (f"; {out['unmatched']} not (yet) in the store" if out["unmatched"] else ""))
    for m, r in out["models"].items():
        acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        print(f"  {m}: {r['matched']} labelled of {r['records']} records, accuracy {acc}")
    return 0
