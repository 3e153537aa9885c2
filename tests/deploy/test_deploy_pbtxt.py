"""EXECUTION_ENV_PATH is set in config.pbtxt text without disturbing anything else."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from deploy.package import ENV_PARAM_VALUE
from deploy.pbtxt import get_execution_env_path, set_execution_env_path

BASE = """name: "sd_depth"
backend: "python"
max_batch_size: 8
input [ { name: "prompt" data_type: TYPE_STRING dims: [ -1 ] } ]
"""

WITH_PARAMS = BASE + """parameters: {
  key: "EXECUTION_ENV_PATH",
  value: {string_value: "$$TRITON_MODEL_DIRECTORY/../sd_env.tar.gz"}
}
parameters: {
  key: "OTHER"
  value: { string_value: "keep me" }
}
"""


def parsed(text: str) -> model_config_pb2.ModelConfig:
    """Triton's own schema: the rewritten text must still be a valid model config."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_appends_block_when_absent() -> None:
    out = set_execution_env_path(BASE, ENV_PARAM_VALUE)
    assert out.startswith(BASE)
    assert out[len(BASE):] == (
        'parameters: {\n'
        '  key: "EXECUTION_ENV_PATH",\n'
        '  value: {string_value: "$$TRITON_MODEL_DIRECTORY/env/python_env.tar.gz"}\n'
        '}\n'
    )
    cfg = parsed(out)
    assert cfg.parameters["EXECUTION_ENV_PATH"].string_value == ENV_PARAM_VALUE
    assert cfg.max_batch_size == 8
    assert get_execution_env_path(BASE) is None
    assert get_execution_env_path(out) == ENV_PARAM_VALUE


def test_appends_after_text_without_trailing_newline() -> None:
    out = set_execution_env_path(BASE.rstrip("\n"), "/opt/env")
    assert parsed(out).parameters["EXECUTION_ENV_PATH"].string_value == "/opt/env"


def test_replaces_existing_value_only() -> None:
    out = set_execution_env_path(WITH_PARAMS, ENV_PARAM_VALUE)
    assert out == WITH_PARAMS.replace("$$TRITON_MODEL_DIRECTORY/../sd_env.tar.gz", ENV_PARAM_VALUE)
    cfg = parsed(out)
    assert cfg.parameters["EXECUTION_ENV_PATH"].string_value == ENV_PARAM_VALUE
    assert cfg.parameters["OTHER"].string_value == "keep me"
    assert get_execution_env_path(WITH_PARAMS) == "$$TRITON_MODEL_DIRECTORY/../sd_env.tar.gz"


def test_other_parameters_block_gets_a_new_entry() -> None:
    text = BASE + 'parameters: { key: "OTHER" value: { string_value: "x" } }\n'
    out = set_execution_env_path(text, "/opt/conda/env")
    cfg = parsed(out)
    assert dict((k, v.string_value) for k, v in cfg.parameters.items()) == {
        "OTHER": "x", "EXECUTION_ENV_PATH": "/opt/conda/env"}


def test_compact_and_list_forms() -> None:
    text = BASE + 'parameters [ { key: "EXECUTION_ENV_PATH"; value { string_value: "old" } } ]\n'
    out = set_execution_env_path(text, "new")
    assert parsed(out).parameters["EXECUTION_ENV_PATH"].string_value == "new"
    assert out.count("EXECUTION_ENV_PATH") == 1


def test_commented_out_entry_is_ignored() -> None:
    text = BASE + '# parameters: { key: "EXECUTION_ENV_PATH", value: {string_value: "commented"} }\n'
    assert get_execution_env_path(text) is None
    out = set_execution_env_path(text, "live")
    assert "commented" in out  # the comment is left alone
    assert parsed(out).parameters["EXECUTION_ENV_PATH"].string_value == "live"


def test_quotes_are_escaped() -> None:
    out = set_execution_env_path(BASE, 'we"ird\\path')
    assert parsed(out).parameters["EXECUTION_ENV_PATH"].string_value == 'we"ird\\path'
    assert get_execution_env_path(out) == 'we"ird\\path'


def test_multiline_value_is_refused() -> None:
    with pytest.raises(ValueError, match="single line"):
        set_execution_env_path(BASE, "a\nb")
