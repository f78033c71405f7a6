"""Analyses of trained models that the book plots (layer similarity, Align-KD Fig. 2)."""

from kdlib.analysis.similarity import adjacent_layer_cosine, vision_text_cosine, vision_text_distance

__all__ = ["adjacent_layer_cosine", "vision_text_cosine", "vision_text_distance"]
