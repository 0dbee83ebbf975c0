"""The latent world model: PCA baseline, conv VAE, dense and conv CVAE, LSTM latent dynamics, walk-forward
training and honest out-of-sample evaluation."""

from __future__ import annotations

from volfast.models.cvae import CVAE, ConvCVAE, CVAEConfig
from volfast.models.io import MODEL_KINDS, ModelConfigError, load_model, save_model
from volfast.models.lstm import AR1, LatentLSTM, LSTMConfig
from volfast.models.pca import PCA, PCAConfig
from volfast.models.train import TrainConfig, run_train
from volfast.models.vae import VAE, VAEConfig
from volfast.models.walkforward import donate_weights, expanding_folds

__all__ = [
    "AR1",
    "CVAE",
    "MODEL_KINDS",
    "PCA",
    "VAE",
    "CVAEConfig",
    "ConvCVAE",
    "LSTMConfig",
    "LatentLSTM",
    "ModelConfigError",
    "PCAConfig",
    "TrainConfig",
    "VAEConfig",
    "donate_weights",
    "expanding_folds",
    "load_model",
    "run_train",
    "save_model",
]
