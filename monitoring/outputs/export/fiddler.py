"""Fiddler: the event table its client publishes (``Model.publish(source=events.parquet)``) and
the model definition it is registered with (``ModelSchema`` + ``ModelSpec`` with an
``ImageEmbedding`` custom feature over the embedding column, the thumbnail link as its source).

Files written by ``export --to fiddler``: ``events.parquet`` (the window: production events),
``baseline.parquet`` (the baseline: publish it as a pre-production dataset), ``model.json``
(schema, spec, task and event columns). Registering and publishing::

    import fiddler as fdl
    m = json.load(open("model.json"))
    model = build_model(m, project_id=project.id); model.create()
    model.publish(source="events.parquet", environment=fdl.EnvType.PRODUCTION)

Task: ``multiclass_classification`` for a classifier, with one probability column per class
(``proba_<label>``, in ``target_class_order``) built from the captured top-k probabilities
(classes outside a row's top k share its remaining mass evenly: an approximation whose error is
at most that mass; the baseline keeps only the top-1, so it is the k = 1 case). ``not_set`` for
models without class predictions (the generative ones). Every embedding space travels: the
input image's, the prompt's (a ``TextEmbedding`` over ``prompt_text`` when captured) and the
generated output's, each a vector column with its own custom feature.

Needs only pandas at import time; ``fiddler-client`` (optional extra ``fiddler``) is imported
by the functions that build its objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from monitoring.outputs.export.probabilities import class_probabilities

EMBEDDING_FEATURE = "image_embedding_clusters"
#: export vector column -> (custom feature name, Fiddler custom feature type)
VECTOR_FEATURES = {"embedding": (EMBEDDING_FEATURE, "FROM_IMAGE_EMBEDDING"),
                   "prompt_embedding": ("prompt_embedding_clusters", "FROM_TEXT_EMBEDDING"),
                   "output_embedding": ("output_embedding_clusters", "FROM_IMAGE_EMBEDDING")}
PROBA_PREFIX = "proba_"
TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def to_fiddler_frame(frame: pd.DataFrame, classes: list[str] | None = None) -> pd.DataFrame:
    """Fiddler's column names and formats; ``classes``: every class of the export (window + baseline),
    so both files carry the same probability columns."""
    df = frame.rename(columns={"prediction_id": "event_id", "prediction_label": "prediction", "actual_label": "target"}).copy()
    df["timestamp"] = df["timestamp"].dt.tz_convert("UTC").dt.strftime(TS_FORMAT)
    for c in ("prediction", "target"):
        df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    for c in VECTOR_FEATURES:
        if c in df.columns:
            df[c] = df[c].map(lambda v: None if v is None else [float(x) for x in v])
    probs = class_probabilities(frame, classes)
    if probs is not None:
        order, table = probs
        for c in order:
            df[PROBA_PREFIX + c] = table[c].to_numpy()
    return df.drop(columns=["top_k_labels", "top_k_probs"], errors="ignore")


def _kind(values: pd.Series) -> str:
    """A tag's Fiddler type from its non-null values (a baseline lacks serving tags: all null there)."""
    inferred = pd.api.types.infer_dtype(values.dropna(), skipna=True)
    return {"integer": "int", "floating": "float", "mixed-integer-float": "float", "boolean": "bool"}.get(inferred, "str")


def _column(df: pd.DataFrame, name: str, kind: str) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "data_type": kind}
    if kind in ("float", "int"):
        s = pd.to_numeric(df[name], errors="coerce")
        col["min"], col["max"] = (float(s.min()), float(s.max())) if kind == "float" else (int(s.min()), int(s.max()))
    elif kind == "category":
        col["categories"] = sorted({str(v) for v in df[name].dropna()})
    elif kind == "vector":
        col["n_dimensions"] = int(len(df[name].iloc[0]))
    return col


def model_definition(events: pd.DataFrame, reference: pd.DataFrame | None, name_: str, features: list[str], tags: list[str]) -> dict[str, Any]:
    """Schema (columns with types and ranges over window + baseline), spec and task, as JSON data."""
    both = pd.concat([events, reference], ignore_index=True) if reference is not None else events
    inputs = [c for c in features if c in both.columns]
    meta = [c for c in tags if c in both.columns]
    has_target = both["target"].notna().any()
    has_link = both["image_link"].notna().any()
    cols = [_column(both, c, "int" if pd.api.types.is_integer_dtype(both[c]) else "float") for c in inputs]
    cols += [_column(both, c, _kind(both[c])) for c in meta]
    proba = [c for c in both.columns if c.startswith(PROBA_PREFIX)]
    classes = [c[len(PROBA_PREFIX):] for c in proba]
    labels = sorted({str(v) for v in pd.concat([both["prediction"], both["target"]]).dropna()} | set(classes),
                    key=lambda c: (len(c), c))
    cols.append({"name": "prediction", "data_type": "category", "categories": labels})
    if has_target:
        cols.append({"name": "target", "data_type": "category", "categories": labels})
    cols += [{"name": c, "data_type": "float", "min": 0.0, "max": 1.0} for c in proba]
    vectors = [c for c in VECTOR_FEATURES if c in both.columns and both[c].notna().any()]
    cols += [_column(both.dropna(subset=[c]), c, "vector") for c in vectors]
    cols += [{"name": "event_id", "data_type": "str"}, {"name": "timestamp", "data_type": "timestamp"}]
    if has_link:
        cols.append({"name": "image_link", "data_type": "str"})
    has_text = "prompt_text" in both.columns and both["prompt_text"].notna().any()
    if has_text:
        cols.append({"name": "prompt_text", "data_type": "str"})
    custom = []
    for c in vectors:
        name, kind = VECTOR_FEATURES[c]
        source = ("image_link" if has_link else "event_id") if c == "embedding" else (
            "prompt_text" if c == "prompt_embedding" and has_text else "event_id")
        feature = {"type": kind, "name": name, "column": c, "source_column": source, "n_clusters": 10}
        custom.append(feature)
    # multiclass: the outputs are the class probabilities in target_class_order; else the label alone
    outputs = proba if proba else ["prediction"]
    spec = {"inputs": inputs + vectors, "outputs": outputs,
            "targets": ["target"] if has_target else [],
            "metadata": meta + (["prediction"] if proba else []) + ["event_id", "timestamp"]
            + (["image_link"] if has_link else []) + (["prompt_text"] if has_text else []),
            "custom_features": custom}
    task = "multiclass_classification" if proba else "not_set"
    d = {"name": name_, "task": task, "input_type": "mixed", "event_id_col": "event_id", "event_ts_col": "timestamp",
         "event_ts_format": TS_FORMAT, "schema": {"schema_version": 1, "columns": cols}, "spec": spec}
    if proba:
        d["task_params"] = {"target_class_order": classes}
    return d


def write_fiddler(primary: pd.DataFrame, reference: pd.DataFrame | None, out: str | Path, model: str,
                  features: list[str], tags: list[str]) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    found = [class_probabilities(f) for f in (primary, reference) if f is not None]
    classes = sorted({c for f in found if f is not None for c in f[0]}, key=lambda c: (len(c), c))
    ev = to_fiddler_frame(primary, classes)
    ref = to_fiddler_frame(reference, classes) if reference is not None else None
    paths = [out / "events.parquet"]
    ev.to_parquet(paths[0], index=False)
    if ref is not None:
        ref.to_parquet(out / "baseline.parquet", index=False)
        paths.append(out / "baseline.parquet")
    (out / "model.json").write_text(json.dumps(model_definition(ev, ref, model, features, tags), indent=2))
    paths.append(out / "model.json")
    return paths


def build_model(definition: dict[str, Any], project_id: str = "00000000-0000-0000-0000-000000000000"):
    """The client's ``Model`` object (not created on a server): pydantic checks schema and spec."""
    import fiddler as fdl

    d = definition
    task_params = fdl.ModelTaskParams(**d["task_params"]) if d.get("task_params") else None
    return fdl.Model(name=d["name"], project_id=project_id, schema=fdl.ModelSchema(**d["schema"]), spec=fdl.ModelSpec(**d["spec"]),
                     input_type=d["input_type"], task=d["task"], task_params=task_params, event_id_col=d["event_id_col"],
                     event_ts_col=d["event_ts_col"], event_ts_format=d["event_ts_format"])


def validate(events: pd.DataFrame, definition: dict[str, Any]) -> list[str]:
    """Errors that would make Fiddler reject ``events`` for the model ``definition`` (empty = fine):
    the model objects must build, every spec column must be in the schema and the table, types
    must agree with the client's own dtype mapping, values within the schema's ranges/categories."""
    from fiddler.utils.column_generator import create_columns_from_df

    errors: list[str] = []
    model = build_model(definition)
    schema = {c.name: c for c in model.schema.columns}
    spec = model.spec
    for role in ("inputs", "outputs", "targets", "metadata"):
        for c in getattr(spec, role) or []:
            if c not in schema:
                errors.append(f"spec.{role}: {c!r} not in the schema")
            if c not in events.columns:
                errors.append(f"spec.{role}: {c!r} not in the event table")
    for cf in spec.custom_features or []:
        col = getattr(cf, "column", None)
        if col not in schema or schema[col].data_type.value != "vector":
            errors.append(f"custom feature {cf.name}: column {col!r} is not a vector column of the schema")
        src = getattr(cf, "source_column", None)
        if src and src not in events.columns:
            errors.append(f"custom feature {cf.name}: source column {src!r} not in the event table")
    scalars = events[[c for c in events.columns if c in schema and schema[c].data_type.value != "vector"]]
    inferred = {c.name: c.data_type.value for c in create_columns_from_df(scalars).columns}
    compatible = {"float": {"float"}, "int": {"int"}, "category": {"str"}, "str": {"str"}, "timestamp": {"str", "timestamp"},
                  "bool": {"bool"}}
    for name, col in schema.items():
        kind = col.data_type.value
        if name not in events.columns:
            if name not in (spec.targets or []):
                errors.append(f"schema column {name!r} missing from the event table")
            continue
        s = events[name].dropna()
        if kind == "vector":
            bad = [i for i, v in s.items() if len(v) != col.n_dimensions]
            if bad:
                errors.append(f"{name}: {len(bad)} vectors are not {col.n_dimensions}-d")
            continue
        if len(s) and inferred.get(name) not in compatible[kind]:  # an all-null column fits any type
            errors.append(f"{name}: table dtype maps to {inferred.get(name)!r}, schema says {kind!r}")
        if kind in ("float", "int") and len(s) and (s.min() < col.min or s.max() > col.max):
            errors.append(f"{name}: values outside [{col.min}, {col.max}]")
        if kind == "category" and not set(s.astype(str)) <= set(col.categories or []):
            errors.append(f"{name}: values {sorted(set(s.astype(str)) - set(col.categories or []))[:5]} not in its categories")
        if kind == "timestamp":
            try:
                pd.to_datetime(s, format=model.event_ts_format)
            except (ValueError, TypeError) as e:
                errors.append(f"{name}: not in event_ts_format {model.event_ts_format!r}: {e}")
    return errors


if __name__ == "__main__":  # python -m monitoring.outputs.export.fiddler DIR  (in a venv with `fiddler-client`)
    import sys

    d = Path(sys.argv[1])
    definition = json.loads((d / "model.json").read_text())
    bad = 0
    for name in ("events", "baseline"):
        if (d / f"{name}.parquet").exists():
            errs = validate(pd.read_parquet(d / f"{name}.parquet"), definition)
            print(json.dumps({"file": f"{name}.parquet", "errors": errs}))
            bad += bool(errs)
    sys.exit(1 if bad else 0)
