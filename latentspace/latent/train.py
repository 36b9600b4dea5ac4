"""One trainer for every latent model: seeded, early-stopped, NaN-guarded, with KL warm-up."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..core.errors import InvalidInputError, TrainingDivergedError
from ..core.validation import check_choice, check_float, check_int
from .models import LatentModel


@dataclass
class TrainReport:
    epochs: int
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    stopped_early: bool = False


def pick_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def train(
    model: LatentModel,
    x: Any,
    *,
    epochs: int = 600,
    batch_size: int = 128,
    lr: float = 2e-3,
    val_fraction: float = 0.1,
    patience: int = 50,
    kl_warmup: int = 50,
    seed: int = 0,
    device: str | None = None,
    lr_schedule: str = "cosine",
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainReport:
    """Train ``model`` on ``x`` (numpy or tensor). Keeps the weights of the best validation epoch.

    ``lr_schedule``: ``"cosine"`` (the rate decays to zero over ``epochs``) or ``"constant"``.
    The defaults (cosine decay, KL warm-up over 50 epochs, 600 epochs) were measured on
    digits against the textbook settings (bench/latent.py, bench/RESULTS.md)."""
    check_int(epochs, "epochs", "train", 1, 100_000)
    check_int(batch_size, "batch_size", "train", 1, 1 << 20)
    check_float(lr, "lr", "train", 1e-8, 10.0)
    check_float(val_fraction, "val_fraction", "train", 0.0, 0.5)
    check_int(patience, "patience", "train", 1, 100_000)
    check_int(kl_warmup, "kl_warmup", "train", 0, 100_000)
    check_choice(lr_schedule, "lr_schedule", "train", ("constant", "cosine"))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = pick_device(device)
    model.to(dev)
    data = model._as_input(x)
    model.check_range(data)
    n = data.shape[0]
    if n < 2:
        raise InvalidInputError("train needs at least 2 examples.")
    perm = torch.randperm(n, generator=gen)
    n_val = int(n * val_fraction)
    val, tr = data[perm[:n_val]], data[perm[n_val:]]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = math.ceil((n - n_val) / batch_size)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * batches)
             if lr_schedule == "cosine" else None)
    beta = model.config.beta if model.config.variational else 0.0
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    stopped = False
    for epoch in range(1, epochs + 1):
        model.train()
        warm = min(1.0, epoch / kl_warmup) if kl_warmup else 1.0
        order = torch.randperm(tr.shape[0], generator=gen)
        tot = {"reconstruction": 0.0, "kl": 0.0}
        for s in range(0, tr.shape[0], batch_size):
            xb = tr[order[s : s + batch_size]]
            terms = model.loss_terms(xb)
            loss = (terms["reconstruction"] + warm * beta * terms["kl"]).mean()
            if not torch.isfinite(loss):
                model.load_state_dict(best[2])
                raise TrainingDivergedError(
                    f"The loss became {loss.item()} in epoch {epoch}; the model keeps the weights of epoch {best[1]}. "
                    "Lower the learning rate (lr) or check the data."
                )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            if sched is not None:
                sched.step()
            tot["reconstruction"] += terms["reconstruction"].sum().item()
            tot["kl"] += terms["kl"].sum().item()
        row = {"epoch": epoch, "reconstruction": tot["reconstruction"] / tr.shape[0], "kl": tot["kl"] / tr.shape[0]}
        evaluation = evaluate(model, val if n_val else tr)
        # early stopping follows the objective being trained (beta-weighted KL for a beta-VAE)
        row["val_loss"] = evaluation["reconstruction"] + beta * evaluation["kl"]
        history.append(row)
        if progress:
            progress(epoch, row)
        if row["val_loss"] < best[0] - 1e-6:
            best = (row["val_loss"], epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= patience:
            stopped = True
            break
    model.load_state_dict(best[2])
    model.eval()
    return TrainReport(len(history), best[1], best[0], history, time.perf_counter() - t0, dev, stopped)


@torch.no_grad()
def evaluate(model: LatentModel, x: Any, batch_size: int = 1024) -> dict[str, float]:
    """Mean reconstruction NLL, KL and negative ELBO per item (nats), using the posterior mean for AEs."""
    model.eval()
    data = model._as_input(x)
    rec = kl = 0.0
    g = torch.Generator(device=data.device).manual_seed(0) if data.device.type == "cpu" else None
    for s in range(0, data.shape[0], batch_size):
        t = model.loss_terms(data[s : s + batch_size], g)
        rec += t["reconstruction"].sum().item()
        kl += t["kl"].sum().item()
    n = data.shape[0]
    return {"reconstruction": rec / n, "kl": kl / n, "neg_elbo": (rec + kl) / n}


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
