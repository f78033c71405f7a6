"""Random weights of the real small shapes (the pretrained weights cannot travel to the GPU machine)."""
import sys
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
root = Path(sys.argv[1])
torch.manual_seed(0)
for name, cls in (("HuggingFaceTB/SmolLM2-135M-Instruct", AutoModelForCausalLM), ("facebook/dinov2-small", AutoModel)):
    folder = root / name
    model = cls.from_config(AutoConfig.from_pretrained(folder))
    model.save_pretrained(folder)
    print(name, sum(p.numel() for p in model.parameters()) / 1e6, "M params, random")
