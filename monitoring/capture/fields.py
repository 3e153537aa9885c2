"""The capture record contract: one place that names every field and its kind.

This module is pure Python (no pyarrow) so the model process can import it cheaply; the
Parquet schema in :mod:`monitoring.ingest.store.schema` is built from :data:`FIELDS`.

Kinds: ``int`` (int32), ``long`` (int64), ``float`` (float64), ``str``, ``bool``,
``json`` (a string holding JSON text; a dict/list is serialised for you), ``vector`` (a
list of float32; numpy arrays and lists accepted).
"""

from __future__ import annotations

import re

#: Version of the record layout written into every row (``schema_version`` column).
#: Bump it when a field changes meaning or type; adding a nullable field keeps it.
SCHEMA_VERSION = 1

#: (name, kind, required, description) -- in column order.
FIELDS: tuple[tuple[str, str, bool, str], ...] = (
    ("schema_version", "int", True, "Record layout version (see SCHEMA_VERSION)."),
    ("request_id", "str", True, "Request id (Triton request id, or one the server made up)."),
    ("model", "str", True, "Model name; also the `model=` Hive partition of the store."),
    ("model_version", "str", True, "Model version as served (Triton version directory)."),
    ("ts_ms", "long", True, "Request arrival time, epoch milliseconds UTC; drives date=/hour=."),
    ("queue_ms", "float", False, "Time spent queued before execution, ms (None if unknown)."),
    ("compute_ms", "float", False, "Model compute time for the batch holding the request, ms."),
    ("batch_size", "int", False, "Number of requests in the executed batch."),
    ("outcome", "str", True, "'ok', 'error', or 'expired' (the caller's deadline_ms passed before the pipeline call; not computed)."),
    ("error_code", "str", False, "Error code for failed requests, e.g. INVALID_ARG."),
    ("error_message", "str", False, "Error message for failed requests."),
    ("image_width", "int", False, "Input image width, px."),
    ("image_height", "int", False, "Input image height, px."),
    ("brightness", "float", False, "Mean luminance of the input image, 0..255 (image_stats)."),
    ("contrast", "float", False, "Std of luminance of the input image, 0..255 units."),
    ("sharpness", "float", False, "Variance of the 3x3 Laplacian of luminance."),
    ("prompt_tokens", "int", False, "Prompt length in tokens (text-to-image models)."),
    ("has_negative_prompt", "bool", False, "Whether a non-empty negative prompt was given."),
    ("gen_args", "json", False, "Generation arguments as JSON text."),
    ("pred_label", "str", False, "Classifier: top-1 label."),
    ("pred_top_prob", "float", False, "Classifier: top-1 probability."),
    ("pred_entropy", "float", False, "Classifier: entropy of the output distribution, nats."),
    ("output_width", "int", False, "Generated image width, px."),
    ("output_height", "int", False, "Generated image height, px."),
    ("output_mean", "float", False, "Generated image: mean pixel value, 0..255."),
    ("output_std", "float", False, "Generated image: std of pixel values, 0..255."),
    ("embedding", "vector", False, "Image/model embedding, float32, fixed size per model+source."),
    ("embedding_source", "str", False, "Where `embedding` came from, e.g. resnet.pooler:flatten."),
    ("text_embedding", "vector", False, "Prompt embedding, float32, fixed size per model+source."),
    ("text_embedding_source", "str", False, "Where `text_embedding` came from."),
    # -- generative models (issue 15): prompt identity, flat generation settings, output checks
    ("prompt_hash", "str", False, "sha256 hex of the UTF-8 prompt; always recorded for prompt models."),
    ("prompt_text", "str", False, "The prompt itself; only with CAPTURE_PROMPT_TEXT=1 (privacy: off by default)."),
    ("gen_steps", "int", False, "num_inference_steps as run."),
    ("gen_guidance", "float", False, "guidance_scale as run."),
    ("gen_strength", "float", False, "strength as run (img2img/depth/inpaint), else None."),
    ("gen_noise_level", "int", False, "noise_level as run (upscaler), else None."),
    ("gen_width", "int", False, "Requested output width, px (text2img), else None."),
    ("gen_height", "int", False, "Requested output height, px (text2img), else None."),
    ("output_nonfinite", "bool", False, "Generated image had NaN/inf values: such a request is refused (outcome=error, NonFiniteOutputError) and its record carries True; False on successes."),
    ("output_blank", "bool", False, "Generated image is (near) constant: std < 1 on 0..255."),
    ("output_embedding", "vector", False, "Embedding of the generated output, float32, if the runtime declares one."),
    ("output_embedding_source", "str", False, "Where `output_embedding` came from."),
    # -- explorer (issue 12)
    ("thumbnail", "str", False, "Base64 JPEG thumbnail of the input (<= 64 px); only with CAPTURE_THUMBNAILS=1."),
    # -- label-free accuracy (issue 23): the classifier's k most probable classes
    ("pred_top_k_labels", "json", False, "Classifier: the k most probable labels, most probable first (k: model parameter capture_top_k, default 5)."),
    ("pred_top_k_probs", "vector", False, "Classifier: their probabilities, same order (the first is pred_top_prob)."),
    ("image_mode", "str", False, "Input image mode as sent (PIL: RGB, L, RGBA, P, ...), before conversion."),
    ("image_format", "str", False, "Input image format as sent (PNG, JPEG, WEBP)."),
    # -- segments (issue 23): request parameters segment.<name>, bounded (monitoring/capture/attributes.py)
    ("segment_attrs", "json", False, "Segment attributes the request carried, JSON object {name: value} (request parameters segment.<name>)."),
)

FIELD_NAMES: frozenset[str] = frozenset(f[0] for f in FIELDS)
FIELD_KINDS: dict[str, str] = {f[0]: f[1] for f in FIELDS}
REQUIRED_FIELDS: tuple[str, ...] = tuple(f[0] for f in FIELDS if f[2])
VECTOR_FIELDS: tuple[str, ...] = tuple(f[0] for f in FIELDS if f[1] == "vector")

#: Model names become a path component (`model=<name>`), so they are restricted to what
#: Triton accepts in practice and what needs no escaping in a Hive partition.
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_model_name(name: str) -> str:
    """Return ``name`` if it is usable as a partition value, else raise ValueError."""
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        raise ValueError(f"invalid model name {name!r}: expected [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 chars")
    return name
