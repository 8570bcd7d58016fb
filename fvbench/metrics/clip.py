"""CLIPScore (text alignment) from a local CLIP folder, computed by torchmetrics, never fetched from a hub.

torchmetrics 1.9.0's CLIPScore refuses local paths (unless they contain "openai") and, with transformers 5, fails
because ``get_image_features`` now returns an output object ('BaseModelOutputWithPooling' has no attribute
'norm'). Its functional ``clip_score`` also accepts a callable returning ``(model, processor)``: fvbench passes one
that loads ``CLIPModel`` and ``CLIPProcessor`` from $FVBENCH_CLIP_DIR with ``local_files_only=True`` and wraps the
model so both feature methods return the projected embeddings. torchmetrics then computes its definition:
``max(100 * mean_i cos(image_i, text), 0)``, here over up to 8 evenly spaced frames of the video.

Prompts longer than CLIP's context (77 tokens for OpenAI CLIP) are truncated by the tokenizer, which keeps the
end-of-text token the text embedding is read from (torchmetrics' own truncation would cut it off).
The image processor is the folder's (preprocessor_config.json or processor_config.json) on the PIL backend, so
torchvision is not needed; a folder without one gets OpenAI CLIP's preprocessing (bicubic shorter side, centre crop,
CLIP mean/std) at the model's image size.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from fvbench.errors import MissingWeightsError
from fvbench.metrics.base import Needs, VideoMetric, WeightPath, check_video, sample_indices

ENV = "FVBENCH_CLIP_DIR"
CLIP_FOLDER = WeightPath(
    key="folder", env=ENV, folder=True,
    what="a local CLIP folder in transformers save_pretrained format (config.json, weights, tokenizer)",
    files=(("config.json",), ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"),
           ("tokenizer.json", "vocab.json")))


class ClipFeatures(torch.nn.Module):
    """A CLIPModel whose ``get_image_features`` / ``get_text_features`` return tensors, as torchmetrics expects."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.visual_projection(self.model.vision_model(pixel_values=pixel_values).pooler_output)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.model.text_projection(out.pooler_output)


class TruncatingProcessor:
    """A CLIPProcessor that truncates text to the model's context, keeping the end-of-text token."""

    def __init__(self, processor: Any, max_length: int):
        self.processor, self.max_length = processor, max_length

    def __call__(self, text: Any = None, images: Any = None, **kwargs: Any) -> Any:
        if text is not None:
            kwargs.update(truncation=True, max_length=self.max_length)
        return self.processor(text=text, images=images, **kwargs)


@lru_cache(maxsize=2)
def load_clip(folder: str) -> tuple[ClipFeatures, TruncatingProcessor]:
    """(model, processor) from a local folder, offline; cached so CLIP metrics share one backbone."""
    from transformers import AutoTokenizer, CLIPModel, CLIPProcessor

    root = Path(folder)
    model = CLIPModel.from_pretrained(root, local_files_only=True).eval()
    if (root / "preprocessor_config.json").is_file() or (root / "processor_config.json").is_file():
        processor = CLIPProcessor.from_pretrained(root, local_files_only=True, backend="pil")
    else:
        from transformers.models.clip import CLIPImageProcessorPil

        size = model.config.vision_config.image_size
        processor = CLIPProcessor(
            image_processor=CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
            tokenizer=AutoTokenizer.from_pretrained(root, local_files_only=True))
    return ClipFeatures(model).eval(), TruncatingProcessor(processor, model.config.text_config.max_position_embeddings)


class CLIPScore(VideoMetric):
    """torchmetrics' CLIPScore of the prompt against up to 8 evenly spaced frames, from a local CLIP."""

    name = "clip_score"
    higher_is_better = True
    version = "2-tm-8frames"
    frames = 8
    needs = Needs(weights=(CLIP_FOLDER,))
    description = "CLIPScore (torchmetrics) of the prompt against up to 8 evenly spaced frames (local CLIP weights)"

    def __init__(self, folder: str | None = None):
        super().__init__(folder=folder)

    def prepare(self) -> None:
        load_clip(str(self.path("folder")))

    @torch.no_grad()
    def score(self, video, *, prompt, reference=None):
        from torchmetrics.functional.multimodal.clip_score import clip_score

        missing = self.missing()
        if missing:
            raise MissingWeightsError("; ".join(missing))
        v = check_video(video)
        frames = torch.from_numpy(v[sample_indices(len(v), self.frames)]).permute(0, 3, 1, 2)
        folder = str(self.path("folder"))
        value = clip_score(list(frames), [prompt] * len(frames), model_name_or_path=lambda: load_clip(folder))
        return float(value)

