"""Read and set the Python backend's EXECUTION_ENV_PATH parameter in config.pbtxt text, and
set the instance count (`with_instance_count`: `--instances`, serving/launch/instances.py).

Only this one parameter is touched, textually, so the packaged config stays byte-identical
to the source apart from that value (no protobuf round-trip reordering fields or dropping
comments). The source file on disk is never modified; packaging writes the result into
the tarball.
"""

from __future__ import annotations

import re

PARAMETER = "EXECUTION_ENV_PATH"

# key: "EXECUTION_ENV_PATH" [,] value: { string_value: "..." }  (pbtxt allows ':' to be omitted
# before a message and ',' or ';' between fields)
_ENTRY = re.compile(
    r'(key\s*:\s*"' + PARAMETER + r'"\s*[,;]?\s*value\s*:?\s*\{\s*string_value\s*:\s*")'
    r'((?:[^"\\\n]|\\.)*)'
    r'(")'
)


def _comment_spans(text: str) -> list[tuple[int, int]]:
    """Spans of `# ...` comments, ignoring '#' inside double-quoted strings."""
    spans = []
    i, n, in_string = 0, len(text), False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#":
            end = text.find("\n", i)
            end = n if end == -1 else end
            spans.append((i, end))
            i = end
            continue
        i += 1
    return spans


def _live_matches(text: str) -> list[re.Match[str]]:
    spans = _comment_spans(text)
    return [m for m in _ENTRY.finditer(text) if not any(a <= m.start() < b for a, b in spans)]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def get_execution_env_path(config_text: str) -> str | None:
    """The EXECUTION_ENV_PATH value set in `config_text` (outside comments), or None."""
    matches = _live_matches(config_text)
    return _unquote(matches[-1].group(2)) if matches else None


def set_execution_env_path(config_text: str, value: str) -> str:
    """Return `config_text` with EXECUTION_ENV_PATH set to `value`.

    Replaces the value of every existing (uncommented) entry; otherwise appends a
    `parameters` block, which Triton merges with any other `parameters` blocks.
    """
    if "\n" in value or "\r" in value:
        raise ValueError("EXECUTION_ENV_PATH must be a single line")
    matches = _live_matches(config_text)
    if matches:
        out, pos = [], 0
        for m in matches:
            out.append(config_text[pos : m.start(2)])
            out.append(_quote(value))
            pos = m.end(2)
        out.append(config_text[pos:])
        return "".join(out)
    sep = "" if config_text.endswith("\n") or config_text == "" else "\n"
    block = (
        "parameters: {\n"
        f'  key: "{PARAMETER}",\n'
        f'  value: {{string_value: "{_quote(value)}"}}\n'
        "}\n"
    )
    return f"{config_text}{sep}{block}"


_GROUPS = re.compile(r"^(?P<head>\s*instance_group\s*\[)(?P<body>[^\]\[]*)\]", re.M)
_COUNT = re.compile(r"\bcount\s*:\s*\d+")


def with_instance_count(config_text: str, count: int) -> str:
    """``config_text`` (a Triton model config in protobuf text) with every instance group's
    ``count`` set to ``count``. The text is kept as written (comments, layout: the readers in
    serving/runtime/capacity/admission.py parse it as text) where the groups are one plain
    ``instance_group [ ... ]`` list; otherwise it is parsed and written back by protobuf (a
    config without instance groups gets one, KIND_AUTO)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"instances: {count!r} must be an integer >= 1")
    config = text_format.Parse(config_text, model_config_pb2.ModelConfig())  # a bad config fails here
    groups = list(_GROUPS.finditer(config_text))
    if len(groups) == 1 and len(_COUNT.findall(groups[0]["body"])) == len(config.instance_group):
        g = groups[0]
        text = config_text[:g.start("body")] + _COUNT.sub(f"count: {count}", g["body"]) + config_text[g.end("body"):]
    else:
        if not config.instance_group:
            config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_AUTO)
        for group in config.instance_group:
            group.count = count
        text = text_format.MessageToString(config)
    check = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert [g.count for g in check.instance_group] == [count] * len(check.instance_group), text
    return text
