"""``python -m monitoring baseline build|list|show``."""

from __future__ import annotations

import argparse
import json
import sys

from monitoring.cli import add_store_args, command


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="store a new baseline version", description=(
        "Store a new baseline version (embedding sample + metadata sample + manifest) under "
        "<store>/_monitoring/baselines/. --from records: captured records of the model (time range "
        "--since/--until); --from parquet PATH: a Parquet file/dir with an 'embedding' column; "
        "--from images DIR: images run through the model in-process (class sub-folders = labels)."))
    add_store_args(b)
    b.add_argument("--model", required=True)
    b.add_argument("--from", dest="source", required=True, choices=["records", "parquet", "images"])
    b.add_argument("path", nargs="?", default=None, help="Parquet path or images directory")
    b.add_argument("--since", default=None, help="records: start (ISO-8601 or epoch)")
    b.add_argument("--until", default=None, help="records: end, exclusive")
    b.add_argument("--checkpoint", default=None, help="images: checkpoint dir (default $CHECKPOINT_DIR_<MODEL> or the repository's)")
    b.add_argument("--prompt", default=None, help="images, prompt models: the prompt sent with every image")
    b.add_argument("--gen-args", default=None, help="images, prompt models: gen_args JSON sent with every image")
    b.add_argument("--max-rows", type=int, default=10_000, help="sample at most this many rows (default 10000)")
    b.add_argument("--alpha", type=float, default=None, help="detectors' false-alarm rate per window (default 0.01)")
    b.add_argument("--n-null", type=int, default=None, help="bootstrap draws per window size (default 200; 999+ lets p reach 0.001)")
    b.add_argument("--json", action="store_true")
    for name, h in (("list", "list the baseline versions of a model"), ("show", "show one baseline's manifest")):
        q = sub.add_parser(name, help=h, description=h)
        add_store_args(q)
        q.add_argument("--model", required=True)
        if name == "show":
            q.add_argument("--version", type=int, default=None, help="default: latest")
        q.add_argument("--json", action="store_true")


@command("baseline", help="build, list and show drift baselines", configure=_args)
def cmd_baseline(args: argparse.Namespace) -> int:
    from monitoring.analysis.baseline.store import list_baselines, load_baseline, save_baseline

    try:
        if args.action == "build":
            from monitoring.analysis.baseline import sources

            X, spaces = None, None
            if args.source == "records":
                spaces, meta, info = sources.spaces_from_records(args.store, args.model, args.since, args.until, args.s3_endpoint_url)
            elif args.path is None:
                print(f"error: --from {args.source} needs a PATH", file=sys.stderr)
                return 2
            elif args.source == "parquet":
                spaces, meta, info = sources.spaces_from_parquet(args.path)
            else:
                X, meta, info = sources.from_images(args.path, args.model, args.checkpoint, prompt=args.prompt,
                                                    gen_args=json.loads(args.gen_args) if args.gen_args else None)
            det = {k: v for k, v in (("alpha", args.alpha), ("n_null", args.n_null)) if v is not None} or None
            b = save_baseline(args.store, args.model, X, meta, spaces=spaces, source=info, embedding_source=info.get("embedding_source"),
                              max_rows=args.max_rows, detectors=det, s3_endpoint_url=args.s3_endpoint_url)
            if args.json:
                print(json.dumps(b.manifest))
            else:
                print(f"baseline {args.model} v{b.version} from {info['kind']} in {args.store}:")
                for name, sp in b.manifest.get("spaces", {}).items():
                    print(f"  {name:<7} space: {sp['n']} rows x {sp['dim']} dims ({sp['embedding_source'] or 'unknown source'})")
                for name, why in b.manifest.get("skipped_spaces", {}).items():
                    print(f"  {name:<7} space: left out ({why})")
            return 0
        if args.action == "list":
            ms = list_baselines(args.store, args.model, args.s3_endpoint_url)
            if args.json:
                print(json.dumps(ms))
            elif not ms:
                print(f"no baseline for {args.model} in {args.store}")
            for m in ([] if args.json else ms):
                sp = ", ".join(f"{k} {v['n']}x{v['dim']}" for k, v in m.get("spaces", {}).items()) or f"image {m['n']}x{m['dim']}"
                print(f"v{m['version']}  {m['created_at']}  spaces: {sp}  source={m['source'].get('kind')}")
            return 0
        b = load_baseline(args.store, args.model, args.version, args.s3_endpoint_url)
        print(json.dumps(b.manifest, indent=None if args.json else 2))
        return 0
    except (ValueError, LookupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
