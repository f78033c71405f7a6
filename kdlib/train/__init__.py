"""Training: SFT of teacher and student, distillation by the paper's recipe and its baselines.

- :class:`~kdlib.train.config.TrainConfig`: one validated configuration per run (method, ablations).
- :func:`~kdlib.train.sft.train_sft`, :func:`~kdlib.train.distill.distill`: the two kinds of run.
- :func:`~kdlib.train.study.train_run`, :func:`~kdlib.train.study.run_study_training`: runs of the study
  with their models saved under ``<out>/models`` (``kdlib train`` and the training notebook).
- :func:`~kdlib.train.metrics_log.read_metrics`, :func:`~kdlib.train.figures.loss_curves`: the per-step
  metrics of a run and their figure.
"""
