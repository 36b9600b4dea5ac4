"""A tiny CLIP built and trained here, offline, on scikit-learn's digits (for tests, demos, benchmarks).

Real CLIP checkpoints are downloads; this one is a few kilobytes of weights that learn in
seconds to put ``"a photo of the digit seven"`` next to images of sevens, so cross-modal
search can be shown and measured without a network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("a", "photo", "of", "the", "digit", "handwritten", "image", "number", *NUMBERS)


def caption(label: int) -> str:
    return f"a photo of the digit {NUMBERS[label]}"


def build_tiny_clip(folder: str | Path, seed: int = 0, projection_dim: int = 16) -> Path:
    """Save an untrained 2-layer CLIP (32x32 images, a word-level vocabulary) to ``folder``."""
    import torch
    from transformers import BertTokenizerFast, CLIPConfig, CLIPModel

    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as Processor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *("##" + c for c in chars)]))
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    Processor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=2, eos_token_id=3,
                         pad_token_id=0),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=projection_dim,
    )
    CLIPModel(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def train_tiny_clip(folder: str | Path, images: np.ndarray, labels: np.ndarray, *, steps: int = 300,
                    batch_size: int = 64, lr: float = 2e-3, seed: int = 0) -> float:
    """Train the saved tiny CLIP in place: each image against the ten digit captions
    (cross-entropy both ways), then save. ``images``: (n, h, w) floats in [0, 1].
    Returns the last loss."""
    import torch
    from transformers import AutoTokenizer, CLIPModel

    from ..embed.clip import to_pil

    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:
        from transformers import CLIPImageProcessor as Processor

    folder = Path(folder)
    torch.manual_seed(seed)
    model = CLIPModel.from_pretrained(folder, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(folder)
    proc = Processor.from_pretrained(folder)
    pixels = proc(images=[to_pil(x) for x in images], return_tensors="pt")["pixel_values"]
    text = tok([caption(i) for i in range(10)], padding=True, return_tensors="pt")
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch_size,), generator=gen)
        img = model.get_image_features(pixel_values=pixels[idx])
        txt = model.get_text_features(**text)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * img @ txt.T
        loss = torch.nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    return float(loss.detach())
