"""Training: SFT of teacher and student, distillation by the paper's recipe and its baselines.

- :class:`~kdlib.train.config.TrainConfig`: one validated configuration per run (method, ablations).
- :mod:`~kdlib.train.harness`: what every run shares (accelerator, recorded configuration, the loop).
- :func:`~kdlib.train.sft.train_sft`, :func:`~kdlib.train.distill.distill`: the two kinds of run.
- :func:`~kdlib.train.study.train_run`, :func:`~kdlib.train.study.run_study_training`,
  :func:`~kdlib.train.study.train_variants`: runs of the study with their models saved where
  :class:`kdlib.run.RunContext` says (``kdlib train`` and the book's chapters).
- :func:`~kdlib.train.metrics_log.read_metrics`, :func:`~kdlib.train.figures.loss_curves`: the per-step
  metrics of a run and their figure.
"""
