"""GeoChat-Bench metrics and scoring.

- :mod:`~kdlib.evaluate.scene`: scene classification OA, AA, confusion matrix.
- :mod:`~kdlib.evaluate.vqa`: RSVQA accuracy per question type, question-weighted mOA and the
  mean of type accuracies.
- :mod:`~kdlib.evaluate.grounding`: referring / grounding acc@0.5 and acc@0.25 (oriented IoU).
- :mod:`~kdlib.evaluate.captioning`: region captioning ROUGE-1, ROUGE-L, METEOR.
- :mod:`~kdlib.evaluate.score`: ``score_file`` and the ``kdlib score`` command.
- :mod:`~kdlib.evaluate.paper`: the core paper's printed numbers.

Import from the sub-modules (``from kdlib.evaluate.score import score_file``): the package
itself imports nothing, so ``kdlib --help`` does not load scikit-learn, NLTK or shapely.
"""

