"""Each model's captured embeddings are the tapped layers' outputs for that very request, row by
row within a batched pipeline call (an independent hook on the same module is the reference)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from serving.runtime.capture_hook import CaptureHook
from serving.runtime.device import DeviceSpec
from serving.runtime.models import runtime_class
from serving.runtime.models.base import RawRequest
from tests.conftest import gen_args, mask_png, png, tensor

PROMPTS = [b"a red fox", b"a blue house by the sea", b"tree"]


def requests_for(model: str) -> list[RawRequest]:
    reqs = []
    for i, prompt in enumerate(PROMPTS):
        if model == "resnet_classifier":
            inputs = {"image": png(48, seed=i)}
        elif model == "sd_upscale":
            inputs = {"prompt": prompt, "image": png(32, seed=i), "gen_args": gen_args(seed=i)}
        elif model == "sd_inpaint":
            inputs = {"prompt": prompt, "image": png(64, seed=i), "mask_image": mask_png(64), "gen_args": gen_args(seed=i)}
        else:
            inputs = {"prompt": prompt, "image": png(64, seed=i), "gen_args": gen_args(seed=i, strength=0.5)}
        reqs.append(RawRequest({k: tensor(v) for k, v in inputs.items()}))
    return reqs


class Recorder:
    """The reference: every raw output of one module, spatially pooled here, not by the Tap."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        self.calls.append(out.detach().float().cpu())

    def pooled(self) -> list[np.ndarray]:
        return [(c.mean(dim=(2, 3)) if c.ndim == 4 else c.reshape(c.shape[0], -1)).numpy() for c in self.calls]


def served_records(rt, reqs):
    hook = CaptureHook(rt, "1", SimpleNamespace(enabled=False), served_name=rt.name)
    rt.capture_embeddings = True
    results = rt.handle(reqs)
    assert all(r.error is None for r in results) and rt.pipeline_calls == 1  # one batched call
    return list(hook.records([f"r{i}" for i in range(len(reqs))], results, 0))


@pytest.mark.parametrize("model", ["resnet_classifier", "sd_img2img", "sd_depth", "sd_inpaint", "sd_upscale"])
def test_captured_embeddings_equal_the_tapped_layer_outputs_row_by_row(checkpoint, model):
    rt = runtime_class(model)(checkpoint(model), DeviceSpec.for_instance("CPU"), max_pipeline_batch=4)
    rt.load()
    refs = {name: Recorder(tap.module) for name, tap in rt.taps.items()}
    reqs = requests_for(model)
    records = served_records(rt, reqs)
    n = len(reqs)
    expected = {}
    if model == "resnet_classifier":
        expected["embedding"] = np.concatenate(refs["embedding"].pooled())
    else:
        hidden = refs["text_embedding"].calls[0].numpy()  # the prompt pass: conditional rows first
        tokens = rt.token_counts([p.decode() for p in PROMPTS])
        expected["text_embedding"] = np.stack([hidden[i, :tokens[i]].mean(axis=0) for i in range(n)])
        expected["output_embedding"] = np.concatenate(refs["output_embedding"].pooled())
        image = refs["embedding"].pooled()
        if model == "sd_upscale":  # last denoising step, conditional (second) half of the CFG batch
            expected["embedding"] = image[-1][-n:]
        elif model == "sd_inpaint":
            # The pipeline's own encoder pass saw the masked image; the captured one is the
            # separate pass over the unmasked input, which comes after the pipeline returned.
            masked = np.concatenate(image[:-1])  # encoded item by item (one generator each)
            expected["embedding"] = image[-1]
            assert masked.shape == image[-1].shape and not np.allclose(masked, image[-1], atol=1e-3)
        else:
            expected["embedding"] = np.concatenate(image)
    for name, rows in expected.items():
        assert rows.shape[0] == n, name
        for i, rec in enumerate(records):
            np.testing.assert_allclose(rec[name], rows[i], rtol=1e-5, atol=1e-6, err_msg=f"{model} {name} row {i}")
        assert not np.allclose(records[0][name], records[1][name]), f"{name}: rows of one batch must differ"
