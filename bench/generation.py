"""Generation in latent space, proven on real digits: text in, image out, through two spaces.

    python bench/generation.py [--epochs 150] [--vae-epochs 300] [--threads 1] [--out docs]
                               [--json-out bench/generation-results.json]

Data: scikit-learn's digits, the fixed stratified split of bench/latent.py (1,347 train,
450 held out). A VAE (z=8, MLP) is trained on the training digits; its latents are cached
(LatentCache) and a latent diffusion model is trained on them twice: conditioned on
MiniLM embeddings of captions (latentspace.data.digits.TRAIN_TEMPLATES, one drawn per item
and step, 15% empty) and on class labels.

Proof: a classifier trained on real training digits (logistic regression on pixels) reads
generated digits. Per guidance scale: accuracy of the requested digit, overall and per
class, for the class model and for the text model on three prompt sets: the training
wordings, wordings never used in training (HELD_OUT_TEMPLATES: the target) and bare
wordings ("seven", "the number 7": NOVEL_TEMPLATES). Fréchet distance in a 20-d PCA space
of real digits against the held-out real digits, for the diffusion samples and, side by
side, for the VAE's prior and GMM samples (the same VAE). Diversity: mean pairwise pixel
distance among samples of one class, against the same among real digits. Times: training
and sampling. Pictures to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    return float(((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


def diversity(x: np.ndarray, y: np.ndarray) -> float:
    """Mean pairwise Euclidean pixel distance within each class, averaged over classes."""
    out = []
    for k in np.unique(y):
        a = x[y == k].reshape((y == k).sum(), -1)
        if len(a) < 2:
            continue
        d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))
        out.append(d[np.triu_indices(len(a), 1)].mean())
    return float(np.mean(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--vae-epochs", type=int, default=600)
    ap.add_argument("--gan-epochs", type=int, default=300)
    ap.add_argument("--per-class", type=int, default=50, help="samples per digit and prompt set")
    ap.add_argument("--guidance", default="1,2,3,4")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(exist_ok=True)

    import tempfile

    import latentspace as ls
    from latentspace.data import digits
    from latentspace.latent import LatentCache, LatentConfig, LatentModel, train
    from latentspace.latent.diffusion import LatentDiffusion
    from latentspace.latent.gan import DCGAN, GANConfig, train_gan
    from latentspace.latent.navigate import ClassConditionalSampler, GaussianMixtureSampler, image_grid

    xtr, ytr = digits.load("train")
    xte, yte = digits.load("test")
    clf = LogisticRegression(max_iter=5000).fit(xtr.reshape(len(xtr), -1), ytr)
    pca = PCA(20, random_state=0).fit(xtr.reshape(len(xtr), -1))

    def read(images):
        return clf.predict(np.asarray(images).reshape(len(images), -1))

    def fd(images):
        return frechet(pca.transform(np.asarray(images).reshape(len(images), -1)),
                       pca.transform(xte.reshape(len(xte), -1)))

    result: dict = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                    "threads": args.threads, "real_accuracy": float(clf.score(xte.reshape(len(xte), -1), yte)),
                    "real_fd": fd(xtr), "real_diversity": diversity(xte, yte)}
    print(json.dumps(result), flush=True)

    t0 = time.perf_counter()
    vae = LatentModel(LatentConfig(input_shape=(1, 8, 8), latent_dim=8, arch="mlp", hidden=(256, 128)), seed=0)
    train(vae, xtr, epochs=args.vae_epochs, seed=0)  # the defaults (bench/latent.py)
    result["vae_train_s"] = time.perf_counter() - t0
    y_all = np.arange(10).repeat(args.per_class)
    table = []  # the three generators, class-conditioned samples

    def row(model, how, imgs, train_s, sample_s):
        pred = read(imgs)
        table.append({"model": model, "conditioning": how, "accuracy": float((pred == y_all).mean()),
                      "fd": fd(imgs), "diversity": diversity(imgs, y_all), "train_s": train_s,
                      "sample_ms_per_image": 1000 * sample_s / len(imgs)})
        print(json.dumps(table[-1]), flush=True)

    # the VAE: prior and GMM samples (unconditioned), and one Gaussian per class of real latents
    zs = vae.latents(xtr)
    t0 = time.perf_counter()
    prior = vae.sample(len(y_all), seed=1).numpy()
    prior_s = time.perf_counter() - t0
    gsamp = vae.sample(len(y_all), seed=1, sampler=GaussianMixtureSampler(10, seed=0).fit(zs)).numpy()
    result["vae"] = {"prior_fd": fd(prior), "gmm_fd": fd(gsamp), "prior_diversity": diversity(prior, read(prior)),
                     "gmm_diversity": diversity(gsamp, read(gsamp)),
                     "reconstruction_accuracy": float((read(vae.reconstruct(xte).numpy()) == yte).mean()),
                     "reconstruction_diversity": diversity(vae.reconstruct(xte).numpy(), yte),
                     "prior_sample_ms_per_image": 1000 * prior_s / len(prior)}
    print(json.dumps({"vae": result["vae"], "vae_train_s": result["vae_train_s"]}), flush=True)
    per_class = ClassConditionalSampler().fit(zs, ytr)
    t0 = time.perf_counter()
    imgs = np.concatenate([vae.decode(per_class.sample(args.per_class, k, seed=k)).numpy() for k in range(10)])
    row("VAE (MLP, z=8)", "a Gaussian per class of real latents", imgs, result["vae_train_s"], time.perf_counter() - t0)

    # a DCGAN on the same digits: class-conditioned by a Gaussian per class of prior latents
    # whose images the classifier labels (a GAN has no encoder)
    t0 = time.perf_counter()
    gan = DCGAN(GANConfig(latent_dim=32, image_shape=(1, 8, 8), features=64, name="digits-gan"), seed=0)
    train_gan(gan, xtr, epochs=args.gan_epochs, seed=0)
    gan_s = time.perf_counter() - t0
    zg = torch.randn(20_000, 32, generator=torch.Generator().manual_seed(0)).numpy()
    labels = read(gan.decode(zg).numpy())
    gan_sampler = ClassConditionalSampler().fit(zg, labels)
    t0 = time.perf_counter()
    # a digit the GAN never draws (mode collapse) cannot be asked for: prior samples stand in (and miss)
    imgs = np.concatenate([gan.decode(gan_sampler.sample(args.per_class, k, seed=k) if k in gan_sampler.params_
                                      else zg[:args.per_class]).numpy() for k in range(10)])
    row("DCGAN (z=32)", "a Gaussian per class of classifier-labelled latents", imgs, gan_s, time.perf_counter() - t0)
    gan_prior = gan.sample(len(y_all), seed=1).numpy()
    result["gan"] = {"prior_fd": fd(gan_prior), "prior_diversity": diversity(gan_prior, read(gan_prior)),
                     "train_s": gan_s, "label_share": np.bincount(labels, minlength=10).tolist()}
    print(json.dumps({"gan": result["gan"]}), flush=True)

    cache = LatentCache(Path(tempfile.mkdtemp()) / "latents.db")
    encoder = ls.default_encoder(precision="fp32")
    guidances = [float(g) for g in args.guidance.split(",")]
    sets = {"train wordings": digits.TRAIN_TEMPLATES, "held-out wordings": digits.HELD_OUT_TEMPLATES,
            "novel wordings": digits.NOVEL_TEMPLATES}
    models = {}
    for cond in ("text", "class"):
        model = LatentDiffusion.create(vae, cond=cond, text_encoder=encoder, class_names=list(digits.WORDS))
        conds = digits.captions_for(ytr) if cond == "text" else ytr
        t0 = time.perf_counter()
        rep = model.fit(xtr, conds, epochs=args.epochs, cache=cache, seed=0)
        result[f"{cond}_train_s"] = time.perf_counter() - t0
        result[f"{cond}_final_loss"] = rep.final_loss
        print(json.dumps({f"{cond}_train_s": result[f"{cond}_train_s"], "loss": rep.final_loss}), flush=True)
        models[cond] = model
    result["cache"] = {"hits": cache.hits, "misses": cache.misses}

    rows = []
    for g in guidances:
        model = models["class"]
        t0 = time.perf_counter()
        imgs = model.generate(list(range(10)), n=args.per_class, guidance=g, steps=args.steps, seed=0).numpy()
        sec = time.perf_counter() - t0
        pred = read(imgs)
        rows.append({"model": "class", "prompts": "class labels", "guidance": g, "accuracy": float((pred == y_all).mean()),
                     "per_class": [float((pred[y_all == k] == k).mean()) for k in range(10)], "fd": fd(imgs),
                     "diversity": diversity(imgs, y_all), "sample_s_per_image": sec / len(imgs)})
        print(json.dumps(rows[-1]), flush=True)
        for name, templates in sets.items():
            model = models["text"]
            # each digit's samples spread over the set's wordings
            prompts = [digits.caption(k, templates[i % len(templates)]) for k in range(10) for i in range(args.per_class)]
            t0 = time.perf_counter()
            imgs = model.generate(prompts, n=1, guidance=g, steps=args.steps, seed=0).numpy()
            sec = time.perf_counter() - t0
            pred = read(imgs)
            rows.append({"model": "text", "prompts": name, "guidance": g, "accuracy": float((pred == y_all).mean()),
                         "per_class": [float((pred[y_all == k] == k).mean()) for k in range(10)], "fd": fd(imgs),
                         "diversity": diversity(imgs, y_all), "sample_s_per_image": sec / len(imgs)})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_class"}), flush=True)
    result["rows"] = rows
    best = max((r for r in rows if r["prompts"] == "held-out wordings"), key=lambda r: r["accuracy"])
    result["best_held_out"] = best
    best_class = max((r for r in rows if r["model"] == "class"), key=lambda r: r["accuracy"])
    for r, train_s in ((best_class, result["class_train_s"]), (best, result["text_train_s"])):
        table.append({"model": f"latent diffusion over the VAE (guidance {r['guidance']:g})",
                      "conditioning": "class labels" if r["model"] == "class" else "prompts in held-out wordings",
                      "accuracy": r["accuracy"], "fd": r["fd"], "diversity": r["diversity"],
                      "train_s": result["vae_train_s"] + train_s,
                      "sample_ms_per_image": 1000 * r["sample_s_per_image"]})
    result["generators"] = table
    print("\n| generator | class-conditioned by | accuracy | Fréchet distance | diversity | train s | "
          "sample ms/image |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['model']} | {r['conditioning']} | {r['accuracy']:.3f} | {r['fd']:.3f} | {r['diversity']:.2f} | "
              f"{r['train_s']:.0f} | {r['sample_ms_per_image']:.2f} |")
    print(f"| (real held-out digits) | - | {result['real_accuracy']:.3f} | {result['real_fd']:.3f} | "
          f"{result['real_diversity']:.2f} | - | - |")
    # pictures: held-out prompts at the best guidance; a path between two prompts
    text = models["text"]
    shown = [digits.caption(k, "a scan of a handwritten {word}") for k in range(10)]
    grid = text.generate(shown, n=8, guidance=best["guidance"], steps=args.steps, seed=0).numpy()
    image_grid(grid.reshape(10, 8, 1, 8, 8), out / "generate-digits-text.png", titles=shown)
    path = text.generate_path("a handwritten one", "a handwritten seven", frames=8, guidance=best["guidance"],
                              steps=args.steps).numpy()
    image_grid(path[None], out / "generate-path-one-to-seven.png")
    image_grid(gan.sample(40, seed=0).numpy(), out / "digits-gan-samples.png", rows=4)
    faces_path = None
    try:
        from latentspace.latent.gan import load_face_generator
        from latentspace.latent.navigate import slerp

        faces = load_face_generator()
        z = torch.randn(2, 100, generator=torch.Generator().manual_seed(4)).numpy()
        image_grid(faces.decode(slerp(z[0], z[1], 8)).numpy(), out / "faces-gan-slerp.png", rows=1, scale=2)
        faces_path = str(out / "faces-gan-slerp.png")
    except ls.BackendUnavailableError:
        pass
    result["faces_picture"] = faces_path
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"best_held_out": {k: v for k, v in best.items() if k != "per_class"}}))
    print("\n| model | prompts | guidance | accuracy | per class | Fréchet distance | diversity |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['prompts']} | {r['guidance']:g} | {r['accuracy']:.3f} | "
              f"{' '.join(f'{a:.2f}' for a in r['per_class'])} | {r['fd']:.3f} | {r['diversity']:.2f} |")


if __name__ == "__main__":
    main()
