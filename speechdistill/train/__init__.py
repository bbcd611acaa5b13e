"""Stage ``train``: knowledge-distillation training loops on accelerate.

- :mod:`~speechdistill.train.config`: every training option (Distil-Whisper and DistilHuBERT);
- :mod:`~speechdistill.train.whisper_kd`: Distil-Whisper (CE + KD, teacher online, shared
  encoder or caches), with :mod:`~speechdistill.train.data` for its batches;
- :mod:`~speechdistill.train.hubert_kd` and :mod:`~speechdistill.train.hubert_student`:
  DistilHuBERT layer-wise distillation;
- :mod:`~speechdistill.train.ctc_finetune`: CTC fine-tuning of an SSL student;
- :mod:`~speechdistill.train.losses`, :mod:`~speechdistill.train.common` (accelerate set-up,
  checkpoints, exact resume, logs), :mod:`~speechdistill.train.waveform`.
"""
