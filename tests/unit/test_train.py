"""Options of KD training of a Whisper student: config file, overrides, presets, the recipes'
configs. Training with the real tiny.en teacher: integration/test_train_tiny_en.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechdistill.train.config import TrainConfig

# ------------------------------------------------------------------------------------------
# configuration


def test_config_file_overrides_and_presets(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("max_steps: 7\nlr: 3.0e-4\nloss_preset: paper\n")
    cfg = TrainConfig.from_sources(path, {"max_steps": 9, "lr": None})
    assert (cfg.max_steps, cfg.lr) == (9, 3e-4)  # command line wins; unset keeps the file's
    assert cfg.weights == (1.0, 0.8)
    assert TrainConfig().weights == (0.8, 1.0)  # distil-whisper's code
    assert TrainConfig(alpha_kd=0.5).weights == (0.8, 0.5)
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_sources(None, {"max_stpes": 3})
    TrainConfig(teacher_mode="cache", timestamp_prob=0.2, prev_context_prob=0.5)  # allowed
    with pytest.raises(ValueError, match="frozen"):
        TrainConfig(teacher_mode="shared_encoder", freeze_encoder=False)
    cfg.save(tmp_path / "saved.yaml")
    assert TrainConfig.from_sources(tmp_path / "saved.yaml", {}) == cfg


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).parents[2].glob("egs/*/conf/train*.yaml")),
    ids=lambda p: f"{p.parts[-3]}/{p.name}",
)
def test_recipe_training_configs_load(path):
    """Every recipe's Distil-Whisper config is a valid set of training options."""
    assert TrainConfig.from_sources(path, {}).max_steps > 0
