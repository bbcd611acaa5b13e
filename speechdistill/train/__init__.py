"""Stage ``train``: knowledge-distillation training loops on accelerate."""

from speechdistill.train.config import TrainConfig
from speechdistill.train.whisper_kd import WhisperKDTrainer, train_whisper

__all__ = ["TrainConfig", "WhisperKDTrainer", "train_whisper"]
