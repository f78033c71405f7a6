"""Analyses of trained models that the book plots.

- :mod:`~kdlib.analysis.similarity`: the layer-similarity measures of Align-KD's Fig. 2.
- :mod:`~kdlib.analysis.layers`: hidden states and vision / text masks of a model on a batch,
  the Fig. 2 profile of saved models and whether its first and last layers stand out.
- :mod:`~kdlib.analysis.latency`: measured latency and peak memory of a model.
- :mod:`~kdlib.analysis.efficiency`: Table 8 at two profiles side by side, measured cost of saved models.
- :mod:`~kdlib.analysis.pruning_eval`: a model fed fewer visual tokens (GeoLLaVA-8K) and its evaluation.

Import from the sub-modules; the package itself exports only the similarity measures (torch only).
"""

from kdlib.analysis.similarity import adjacent_layer_cosine, vision_text_cosine, vision_text_distance

__all__ = ["adjacent_layer_cosine", "vision_text_cosine", "vision_text_distance"]
