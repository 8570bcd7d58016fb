"""CLIPScore (text alignment) from a local CLIP folder, never a hub.

torchmetrics 1.9.0's CLIPScore refuses local paths and breaks with transformers 5 (environment.md), so the score is
computed here the way CLIPScore defines it: 100 * max(cos(image embedding, text embedding), 0), averaged over up to
8 evenly spaced frames. Images are preprocessed in torch (resize shorter side bicubic, centre crop, CLIP
normalisation), so torchvision is not needed. Folder: $FVBENCH_CLIP_DIR, a transformers ``save_pretrained`` CLIP
(config.json, model.safetensors, tokenizer files; preprocessor_config.json optional).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fvbench.errors import FvbenchError
from fvbench.metrics.base import Metric

ENV = "FVBENCH_CLIP_DIR"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@lru_cache(maxsize=2)
def load_clip(folder: str):
    """(model, tokenizer, image size, mean, std) from a local folder."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    size, mean, std = model.config.vision_config.image_size, CLIP_MEAN, CLIP_STD
    pre = Path(folder) / "preprocessor_config.json"
    if pre.is_file():
        cfg = json.loads(pre.read_text())
        mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
    return model, tokenizer, size, mean, std


def preprocess(frames: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised (N, 3, size, size): bicubic resize of the shorter side, centre crop."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[2:]
    s = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * s)), max(size, round(w * s))), mode="bicubic",
                      align_corners=False, antialias=True).clamp(0, 1)
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    x = x[:, :, top:top + size, left:left + size]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class CLIPScore(Metric):
    """100 * max(cos(CLIP image, CLIP text), 0), mean over up to 8 frames."""

    name = "clip_score"
    higher_is_better = True
    version = "1-8frames"
    requires = f"a local CLIP folder in ${ENV}"
    description = "CLIPScore of the prompt against up to 8 evenly spaced frames (local CLIP weights)"

    def __init__(self, folder: str | None = None):
        self.folder = folder or os.environ.get(ENV)

    def missing(self) -> list[str]:
        if not self.folder:
            return [f"set {ENV} to a local CLIP folder (transformers save_pretrained format)"]
        root = Path(self.folder)
        out = []
        if not (root / "config.json").is_file():
            out.append(f"missing {root / 'config.json'}")
        if not any((root / f).is_file() for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
            out.append(f"missing {root / 'model.safetensors'}")
        if not any((root / f).is_file() for f in ("tokenizer.json", "vocab.json")):
            out.append(f"missing {root / 'tokenizer.json'} (or vocab.json + merges.txt)")
        return out

    @torch.no_grad()
    def score(self, video, *, prompt, reference=None):
        if self.missing():
            raise FvbenchError("; ".join(self.missing()))
        model, tokenizer, size, mean, std = load_clip(str(self.folder))
        idx = np.unique(np.linspace(0, len(video) - 1, min(8, len(video))).round().astype(int))
        pixels = preprocess(video[idx], size, mean, std)
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        max_len = model.config.text_config.max_position_embeddings
        tok = tokenizer([prompt], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        text = model.text_projection(model.text_model(input_ids=tok.input_ids,
                                                      attention_mask=tok.attention_mask).pooler_output)
        cos = F.cosine_similarity(image, text.expand_as(image), dim=-1)
        return float((100 * cos.clamp_min(0)).mean())
