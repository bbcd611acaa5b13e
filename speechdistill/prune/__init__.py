"""Structured pruning with distillation (DPHuBERT, Peng et al. 2023) on transformers' Whisper
encoder and HuBERT models.

- :mod:`.hardconcrete`: Hard-Concrete (L0) gates, DPHuBERT's constants and evaluation mask;
- :mod:`.layout`: where a model's prunable units are and the parameters that depend on them;
- :mod:`.gates`: gates on heads, FFN neurons and CNN channels (forward hooks), and the expected
  parameter count as a differentiable function of them;
- :mod:`.distill`: layer-to-layer maps initialised to the identity (the loss is
  :func:`speechdistill.train.losses.layerwise_distill_loss`);
- :mod:`.sparsity`: the Lagrangian sparsity loss, its λs (gradient ascent) and the target warm-up;
- :mod:`.remove`: physical removal of the masked units (pruned model == masked model);
- :mod:`.io`: saving and loading pruned models (safetensors + config.json, this package's classes).
"""
