"""Read and set the Python backend's EXECUTION_ENV_PATH parameter in config.pbtxt text.

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
