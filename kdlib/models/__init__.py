"""Teacher and student multimodal LLMs (GeoChat design on ``LlavaForConditionalGeneration``).

One interface for every profile: build or load a pair, train it (LoRA or full), read its
projector outputs z(x), hidden states and attention maps, count its parameters and FLOPs.
"""

from kdlib.models.build import ModelPair, build_from_pretrained, build_pair, drop_layers
from kdlib.models.efficiency import efficiency, efficiency_table
from kdlib.models.features import MLLMOutput, mllm_forward, num_image_tokens, projector_features
from kdlib.models.geochat import convert_geochat
from kdlib.models.io import LoadedMLLM, MissingModelError, load_mllm, save_mllm
from kdlib.models.lora import apply_lora, freeze, projector_only, trainable_parameters
from kdlib.models.tokenizer import IMAGE_TOKEN, build_tokenizer
from kdlib.models.vocab import check_same_vocab, image_token_id

__all__ = [
    "IMAGE_TOKEN", "LoadedMLLM", "MLLMOutput", "MissingModelError", "ModelPair", "apply_lora", "projector_only",
    "build_from_pretrained", "build_pair", "build_tokenizer", "check_same_vocab", "convert_geochat",
    "drop_layers", "efficiency", "efficiency_table", "freeze", "image_token_id", "load_mllm",
    "mllm_forward", "num_image_tokens", "projector_features", "save_mllm", "trainable_parameters",
]
