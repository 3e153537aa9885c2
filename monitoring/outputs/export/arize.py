"""Arize: the dataframe + ``Schema`` its pandas logger (``Client.log``) takes, and the SDK's own
validation run offline (the same checks ``log`` runs before it uploads).

Files written by ``export --to arize``: ``primary.parquet`` (the window, environment PRODUCTION),
``reference.parquet`` (the baseline, environment TRAINING), ``schema.json`` (the ``Schema``
keyword arguments). Logging them::

    from arize.ml.client import MLModelsClient       # or arize.pandas.logger.Client (SDK 7)
    from arize.ml.types import Schema, EmbeddingColumnNames, Environments, ModelTypes
    spec = json.load(open("schema.json"))
    client.log(dataframe=pd.read_parquet("primary.parquet"), schema=build_schema(spec),
               environment=Environments.PRODUCTION, model_type=ModelTypes.SCORE_CATEGORICAL, ...)

This module needs only pandas at import time; the ``arize`` SDK (optional extra ``arize``) is
imported by the functions that build SDK objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

EMBEDDING_NAME = "image_embedding"
#: export column -> Arize embedding feature name (the prompt's embedding links to its text when captured)
EXTRA_EMBEDDINGS = {"prompt_embedding": "prompt_embedding", "output_embedding": "output_embedding"}
VECTOR_COLUMNS = ("embedding", *EXTRA_EMBEDDINGS)


def _float_list(v):
    return None if v is None else [float(x) for x in v]
MODEL_TYPE = "SCORE_CATEGORICAL"


def to_arize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Arize's column conventions: int Unix-second timestamps, string labels, list embeddings."""
    df = frame.copy()
    df["timestamp"] = (df["timestamp"].astype("int64") // 10**9).astype("int64")
    for c in ("prediction_label", "actual_label"):
        df[c] = df[c].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    for c in VECTOR_COLUMNS:
        if c in df.columns:
            df[c] = df[c].map(_float_list)
    for c in ("top_k_labels", "top_k_probs"):  # not part of the Arize schema: left out of its file
        df = df.drop(columns=c, errors="ignore")
    for c in ("image_link", "model_version", "embedding_source", "prompt_text"):  # an all-null column must still be a string column
        if c in df.columns:
            df[c] = df[c].astype("string")
    return df


def schema_spec(frame: pd.DataFrame, features: list[str], tags: list[str]) -> dict[str, Any]:
    """The ``Schema`` keyword arguments as JSON-able data."""
    spec: dict[str, Any] = {
        "prediction_id_column_name": "prediction_id",
        "timestamp_column_name": "timestamp",
        "prediction_label_column_name": "prediction_label",
        "feature_column_names": [c for c in features if c in frame.columns],
        "tag_column_names": [c for c in tags if c in frame.columns],
        "embedding_feature_column_names": {},
    }
    emb = spec["embedding_feature_column_names"]
    if frame["embedding"].notna().any():
        emb[EMBEDDING_NAME] = {"vector_column_name": "embedding",
                               **({"link_to_data_column_name": "image_link"} if frame["image_link"].notna().any() else {})}
    for col, name in EXTRA_EMBEDDINGS.items():
        if col in frame.columns and frame[col].notna().any():
            emb[name] = {"vector_column_name": col}
            if col == "prompt_embedding" and "prompt_text" in frame.columns and frame["prompt_text"].notna().any():
                emb[name]["data_column_name"] = "prompt_text"
    if frame["actual_label"].notna().any():
        spec["actual_label_column_name"] = "actual_label"
    return spec


def write_arize(primary: pd.DataFrame, reference: pd.DataFrame | None, out: str | Path, features: list[str], tags: list[str]) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = to_arize_frame(primary)
    written = [out / "primary.parquet"]
    p.to_parquet(written[0], index=False)
    spec: dict[str, Any] = {"model_type": MODEL_TYPE, "schema": schema_spec(p, features, tags)}
    if reference is not None and reference["actual_label"].isna().all():
        # Arize's TRAINING environment requires actual labels; a baseline without them (a generative
        # model's, or one built from unlabelled records) would be refused: say so instead of writing it.
        spec["reference_skipped"] = "the baseline has no actual labels, which Arize requires for a TRAINING set"
        reference = None
    if reference is not None:
        to_arize_frame(reference).to_parquet(out / "reference.parquet", index=False)
        written.append(out / "reference.parquet")
    (out / "schema.json").write_text(json.dumps(spec, indent=2))
    written.append(out / "schema.json")
    return written


def build_schema(spec: dict[str, Any]):
    """The SDK's ``Schema`` from :func:`schema_spec` output (needs ``arize``)."""
    from arize.ml.types import EmbeddingColumnNames, Schema

    kw = dict(spec)
    kw["embedding_feature_column_names"] = {k: EmbeddingColumnNames(**v) for k, v in kw.get("embedding_feature_column_names", {}).items()}
    return Schema(**kw)


def validate(df: pd.DataFrame, spec: dict[str, Any], environment: str = "PRODUCTION", model_name: str = "model",
             model_type: str = MODEL_TYPE) -> list[str]:
    """Run the checks ``Client.log`` runs before uploading (required, params, types, values) and
    build the protobuf schema it would send; returns the error messages (empty = accepted)."""
    import pyarrow as pa
    from arize.ml.batch_validation.validator import Validator
    from arize.ml.types import Environments, ModelTypes
    from arize.utils.dataframe import remove_extraneous_columns

    schema, env, mt = build_schema(spec), Environments[environment], ModelTypes[model_type]
    errors = Validator.validate_required_checks(dataframe=df, model_id=model_name, environment=env, schema=schema)
    if not errors:
        errors = Validator.validate_params(dataframe=df, model_id=model_name, model_type=mt, environment=env, schema=schema)
    if not errors:
        df = remove_extraneous_columns(df=df, schema=schema)
        table = pa.Table.from_pandas(df, preserve_index=False)
        errors = Validator.validate_types(model_type=mt, schema=schema, pyarrow_schema=table.schema)
    if not errors:
        errors = Validator.validate_values(dataframe=df, environment=env, schema=schema, model_type=mt, max_past_years=5)
    return [str(e) if not hasattr(e, "error_message") else e.error_message() for e in errors]


if __name__ == "__main__":  # python -m monitoring.outputs.export.arize DIR  (in a venv with `arize`): validate an export
    import sys

    d = Path(sys.argv[1])
    spec = json.loads((d / "schema.json").read_text())
    bad = 0
    for name, env in (("primary", "PRODUCTION"), ("reference", "TRAINING")):
        if (d / f"{name}.parquet").exists():
            errs = validate(pd.read_parquet(d / f"{name}.parquet"), spec["schema"], env, model_type=spec["model_type"])
            print(json.dumps({"file": f"{name}.parquet", "environment": env, "errors": errs}))
            bad += bool(errs)
    sys.exit(1 if bad else 0)
