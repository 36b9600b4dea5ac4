"""The latent half: autoencoders and VAEs to train, load, navigate and search; latent
diffusion to generate from a prompt.

Imports torch: ``import latentspace.latent`` only when you need it.
"""

from .cache import LatentCache, to_collection
from .config import LatentConfig
from .diffusers_vae import DiffusersVAE
from .diffusion import DiffusionConfig, LatentDiffusion, load_diffusion
from .gan import DCGAN, GANConfig, load_face_generator, load_gan, train_gan
from .io import load_model, open_model, save_model
from .models import LatentModel, Posterior
from .train import TrainingDivergedError, TrainReport, evaluate, train

__all__ = ["LatentConfig", "LatentModel", "Posterior", "load_model", "open_model", "save_model", "train", "evaluate",
           "TrainReport", "TrainingDivergedError", "LatentCache", "to_collection",
           "DiffusersVAE", "DiffusionConfig", "LatentDiffusion", "load_diffusion",
           "DCGAN", "GANConfig", "load_gan", "load_face_generator", "train_gan"]
