"""The code behind the book's chapters, one module per chapter that needs more than the library layers.

- :mod:`~kdlib.chapters.reverse_kl`: the toy experiments of "Reverse KL step by step".
- :mod:`~kdlib.chapters.exact_gradient`: the same chapter's exact expected update of every MiniLLM
  estimator against the true gradient, by enumerating every response of a toy.
- :mod:`~kdlib.chapters.related`: Align-KD, Switch-KD (DBiLD) and forward-KL students trained like
  the paper's recipe, their budgets and tables.
- :mod:`~kdlib.chapters.ablations`: the paper's recipe with one part removed at a time.
- :mod:`~kdlib.chapters.seeds`: several seeds of the study's three models, intervals and verdicts.
- :mod:`~kdlib.chapters.training`: the training chapter's words from the profile and the runs (which runs,
  stage 1, where distillation starts, the kept step, which term steers the update).
- :mod:`~kdlib.chapters.words`: sentences of every chapter written from its numbers and profile
  (loss trends, single-run verdicts with intervals, collapsed and degenerate answers).
- :mod:`~kdlib.chapters.tables`: the paper's Tables 3-8 rebuilt from a run's results.
- :mod:`~kdlib.chapters.reproduce`: executing every notebook and building the book.
"""
