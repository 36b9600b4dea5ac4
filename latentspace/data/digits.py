"""scikit-learn's handwritten digits (1,797 8x8 images, shipped with scikit-learn) with
captions: the data latent models and latent diffusion are trained and checked on.

Captions come from templates. ``TRAIN_TEMPLATES`` are what a text-conditioned model is
trained on; ``HELD_OUT_TEMPLATES`` are wordings it never saw in training (the test of text
conditioning); ``NOVEL_TEMPLATES`` are bare wordings far from every training caption
("seven", "the number 7"), reported separately.
"""

from __future__ import annotations

import numpy as np

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_TEMPLATES = (
    "a handwritten {word}",
    "a handwritten digit {word}",
    "the digit {d}",
    "an image of the digit {d}",
    "a drawing of the number {word}",
    "{word}, written by hand",
    "a photo of a handwritten {d}",
    "handwriting: the digit {word}",
    "the character {d} drawn with a pen",
    "a pen drawing of {word}",
    "someone wrote the number {d}",
    "a sloppy handwritten {word}",
)
HELD_OUT_TEMPLATES = (
    "a scan of a handwritten {word}",
    "a hand-drawn {d}",
    "digit: {word}",
    "a small picture of a {word}",
)
NOVEL_TEMPLATES = ("the number {d}", "{word}")


def caption(label: int, template: str) -> str:
    return template.format(word=WORDS[int(label)], d=int(label))


def captions_for(labels, templates=TRAIN_TEMPLATES) -> list[list[str]]:
    """Every template's caption of each label: one list of captions per item."""
    return [[caption(int(y), t) for t in templates] for y in labels]


def load(split: str | None = None, *, test_size: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images scaled to [0, 1] as (n, 1, 8, 8) float32, and labels. ``split``: None (all),
    ``"train"`` or ``"test"`` (a fixed stratified split, as in bench/latent.py)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    if split is None:
        return x, y
    tr, te = train_test_split(np.arange(len(x)), test_size=test_size, stratify=y, random_state=seed)
    idx = {"train": tr, "test": te}.get(split)
    if idx is None:
        from ..core.errors import InvalidInputError

        raise InvalidInputError(f"split must be None, 'train' or 'test'; got {split!r}.")
    return x[idx], y[idx]


__all__ = ["WORDS", "TRAIN_TEMPLATES", "HELD_OUT_TEMPLATES", "NOVEL_TEMPLATES", "caption", "captions_for", "load"]
