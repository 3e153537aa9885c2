"""One record path: serving N colour photos through tritonserver and building a baseline from the
same N files give identical metadata fields and embeddings (issue 10: a clean window raised a
metadata-drift alarm because the two sides computed luma differently; gray images hid it)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from monitoring.analysis.baseline.sources import from_images
from monitoring.ingest.store import read_records_df
from serving.launch.client import infer
from serving.launch.server import ROOT, TritonProcess, server_env
from tests.conftest import TEST_INSTANCES, free_port, tensor

N_CLASSIFIER, N_SD = 12, 3
PROMPT = "a photo"
GEN_ARGS = {"num_inference_steps": 2, "strength": 0.5, "seed": 7}
IMAGE_FIELDS = ["image_width", "image_height", "brightness", "contrast", "sharpness"]


def photo_crops(n: int, size: int = 72) -> list[bytes]:
    """Colour crops of two real photographs (scikit-learn's sample images), as JPEG files."""
    rng = np.random.default_rng(0)
    photos = load_sample_images().images
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        buf = io.BytesIO()
        Image.fromarray(p[y:y + size, x:x + size]).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def served(model_repo, tmp_path_factory):
    """Image folders per model, and the store holding what tritonserver captured serving them."""
    tmp = tmp_path_factory.mktemp("one-record-path")
    spool, store = tmp / "spool", tmp / "store"
    folders = {"resnet_classifier": photo_crops(N_CLASSIFIER), "sd_img2img": photo_crops(N_SD)}
    server = TritonProcess(repo=model_repo, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                           log_path=tmp / "tritonserver.log", extra_env={"CAPTURE_SPOOL_DIR": str(spool)},
                           models=tuple(folders), instances=TEST_INSTANCES).start(wait_s=600)
    try:
        for model, images in folders.items():
            folder = tmp / model
            folder.mkdir()
            for i, data in enumerate(images):
                (folder / f"crop{i:02d}.jpg").write_bytes(data)
                inputs = {"image": tensor(data)}
                if model == "sd_img2img":
                    inputs.update(prompt=tensor(PROMPT.encode()), gen_args=tensor(json_bytes(GEN_ARGS)))
                infer(model, inputs, url=server.http_url, request_id=f"crop{i:02d}.jpg")
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    subprocess.run([sys.executable, "-m", "monitoring", "sidecar", "--spool", str(spool), "--store", str(store),
                    "--once", "--metrics-port", "-1"], check=True, cwd=ROOT, env=server_env(), timeout=600)
    return tmp, store


def json_bytes(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("model", ["resnet_classifier", "sd_img2img"])
def test_served_records_equal_the_baseline_built_from_the_same_files(served, model):
    tmp, store = served
    kw = {"prompt": PROMPT, "gen_args": GEN_ARGS} if model == "sd_img2img" else {}
    X, meta, info = from_images(tmp / model, model, batch_size=4, **kw)
    meta = meta.set_index("request_id")
    rec = read_records_df(str(store), model).query("outcome == 'ok'").set_index("request_id").loc[meta.index]
    assert len(rec) == len(meta) == (N_SD if model == "sd_img2img" else N_CLASSIFIER)
    assert (rec.contrast > 0).all() and rec.brightness.nunique() == len(rec)  # colour, varied: not a gray test
    # identical image statistics: same decoder, same luma, same function
    for field in IMAGE_FIELDS:
        np.testing.assert_array_equal(rec[field].to_numpy(), meta[field].to_numpy(), err_msg=field)
    if model == "resnet_classifier":
        assert list(rec.pred_label) == list(meta.pred_label)
        np.testing.assert_allclose(rec.pred_top_prob, meta.pred_top_prob, rtol=1e-4)
    else:
        for field in ("prompt_hash", "gen_steps", "gen_strength", "gen_guidance", "has_negative_prompt"):
            assert list(rec[field]) == list(meta[field]), field
    served_X = np.stack(rec.embedding.map(np.asarray).to_list())
    assert set(rec.embedding_source) == {info["embedding_source"]}
    np.testing.assert_allclose(served_X, X, rtol=1e-4, atol=1e-5)


def test_image_baseline_of_a_prompt_model_needs_a_prompt(tmp_path, checkpoint):
    (tmp_path / "a.jpg").write_bytes(photo_crops(1)[0])
    with pytest.raises(ValueError, match="needs a prompt for every image: give --prompt"):
        from_images(tmp_path, "sd_img2img", checkpoint("sd_img2img"))


def test_image_baseline_refuses_a_model_that_needs_more_than_images(tmp_path):
    (tmp_path / "a.jpg").write_bytes(photo_crops(1)[0])
    with pytest.raises(ValueError, match=r"requires input\(s\) \['mask_image'\].*--from records"):
        from_images(tmp_path, "sd_inpaint", prompt="x")
