import pytest

from serving.runtime.errors import InvalidInputError
from serving.runtime.gen_args import GenArgSpec, parse_gen_args

SPECS = {
    "num_inference_steps": GenArgSpec("num_inference_steps", int, 30, 1, 150),
    "strength": GenArgSpec("strength", float, 0.8, 0.0, 1.0, exclusive_minimum=True),
    "height": GenArgSpec("height", int, None, 64, 1024, multiple_of=8),
    "output_format": GenArgSpec("output_format", str, "png", choices=("png", "jpeg")),
}


def test_defaults_filled_and_values_kept():
    out = parse_gen_args(b'{"num_inference_steps": 5, "height": 128}', SPECS)
    assert out == {"num_inference_steps": 5, "strength": 0.8, "height": 128, "output_format": "png"}
    assert parse_gen_args(None, SPECS)["num_inference_steps"] == 30
    assert parse_gen_args(b"  ", SPECS)["strength"] == 0.8


@pytest.mark.parametrize("raw, message", [
    (b"{not json", r"gen_args: not valid JSON"),
    (b"[1, 2]", r"gen_args: expected a JSON object, got list"),
    (b'{"steps": 3}', r"gen_args: unknown key\(s\) \['steps'\]; this model accepts"),
    (b'{"num_inference_steps": "5"}', r"gen_args.num_inference_steps: '5' must be an integer"),
    (b'{"num_inference_steps": 2.5}', r"gen_args.num_inference_steps: 2.5 must be an integer"),
    (b'{"num_inference_steps": true}', r"gen_args.num_inference_steps: True must be an integer"),
    (b'{"num_inference_steps": 0}', r"gen_args.num_inference_steps: 0 is below the minimum 1"),
    (b'{"num_inference_steps": 151}', r"gen_args.num_inference_steps: 151 exceeds the maximum 150"),
    (b'{"strength": 0}', r"gen_args.strength: 0.0 must be > 0.0"),
    (b'{"strength": 1.5}', r"gen_args.strength: 1.5 exceeds the maximum 1.0"),
    (b'{"height": 100}', r"gen_args.height: 100 must be a multiple of 8"),
    (b'{"output_format": "gif"}', r"gen_args.output_format: 'gif' is not one of \['png', 'jpeg'\]"),
])
def test_invalid_gen_args(raw, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_gen_args(raw, SPECS)


def test_int_accepted_for_float():
    assert parse_gen_args(b'{"strength": 1}', SPECS)["strength"] == 1.0
