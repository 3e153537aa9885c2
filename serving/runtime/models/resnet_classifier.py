"""`resnet_classifier`: a transformers ResNet image classifier; every image of a call in one forward."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, ResNetForImageClassification

from serving.runtime.images import read_image
from monitoring.capture.image_stats import DEFAULT_TOP_K, MAX_TOP_K, check_top_k
from monitoring.capture.record import Contribution
from serving.runtime.models.base import Item, ItemOutput, ModelRuntime, RawRequest
from serving.runtime.checkpoints.safety import check_checkpoint
from serving.runtime.embeddings import Tap, spatial_mean


@dataclass
class ClassifierItem(Item):
    image: Image.Image | None = None


class ResNetClassifierRuntime(ModelRuntime):
    name = "resnet_classifier"
    required_inputs = ("image",)
    max_image_pixels = 4096 * 4096  # the processor resizes to 224; this only bounds decoding
    min_image_side = 8

    def _load(self) -> None:
        path = str(check_checkpoint(self.checkpoint_dir))
        self.processor = AutoImageProcessor.from_pretrained(path)
        model = ResNetForImageClassification.from_pretrained(path, use_safetensors=True, dtype=self.device.dtype)
        self.model = model.to(self.device.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        # The pooled features the classification head reads: the penultimate-layer embedding.
        self.taps = {"embedding": Tap(self.model, "resnet.pooler", spatial_mean, "resnet.pooler:flatten")}
        self.top_k = self.capture_top_k(self.parameters)

    @staticmethod
    def capture_top_k(parameters: dict[str, str]) -> int:
        """The config parameter ``capture_top_k``: how many class probabilities each capture record
        keeps for label-free accuracy estimation (default 5, 0 = none); a bad value fails the load."""
        text = (parameters.get("capture_top_k") or "").strip()
        if not text:
            return DEFAULT_TOP_K
        try:
            return check_top_k(int(text))
        except ValueError:
            raise ValueError(f"parameter capture_top_k: {text!r} must be an integer in 0..{MAX_TOP_K}") from None

    def check_inputs(self, request: RawRequest, request_index: int) -> list[Item]:
        items = []
        for row in range(self.rows(request)):
            img = read_image("image", self.cell(request, "image", row), self.max_image_pixels, self.min_image_side)
            items.append(ClassifierItem(request_index=request_index, image=img))
        return items

    def batch_key(self, item: Item) -> Hashable:
        return None  # the processor resizes every image to one shape: all share a forward

    def preprocess(self, items: list[ClassifierItem]) -> torch.Tensor:
        pixels = self.processor(images=[it.image for it in items], return_tensors="pt")["pixel_values"]
        return pixels.to(self.device.device, dtype=self.device.dtype)

    def predict(self, items: list[Item]) -> list[ItemOutput]:
        pixels = self.preprocess(items)  # type: ignore[arg-type]
        with torch.inference_mode():
            if self.capture_embeddings:
                tap = self.taps["embedding"]
                with tap.armed_for_call():
                    logits = self.model(pixel_values=pixels).logits.float()
                embeddings = tap.first_rows(len(items))
            else:
                logits = self.model(pixel_values=pixels).logits.float()
                embeddings = None
        probs = torch.softmax(logits, dim=-1).cpu().numpy().astype(np.float32)
        return [ItemOutput(values={"probabilities": p, "label": self.labels[int(p.argmax())]},
                           embeddings={} if embeddings is None else {"embedding": embeddings[i]})
                for i, p in enumerate(probs)]

    def contribution(self, item: Item, output: ItemOutput) -> Contribution:
        assert isinstance(item, ClassifierItem)
        return Contribution(input_image=item.image, probabilities=output.values["probabilities"],
                            labels=self.labels, top_k=self.top_k, embeddings=self.embedded(output))

    def postprocess(self, items: list[Item], outputs: list[ItemOutput]) -> dict[str, np.ndarray]:
        return {
            "probabilities": np.stack([o.values["probabilities"] for o in outputs]).astype(np.float32),
            "label": np.array([o.values["label"].encode() for o in outputs], dtype=np.object_).reshape(-1, 1),
        }
