"""How the GPU check's inputs were made on the CPU machine (run from the repository root).

Only 64 MiB travels to the lent GPU machine, so: the two `small` model folders without their
weights (random weights of the same shapes are drawn there by random_models.py), the data root with
every image shrunk to at most 96 px (JPEG quality 60; DOTA crops kept; no geochat_bench), and wheels
of the packages the GPU image lacks (transformers 5.24.0, shapely, rouge-score, nltk; not wn, so
region captions were not scored there). Accuracy numbers from such a run mean nothing; it checks that
kdlib trains and evaluates on CUDA, and times `small`-shaped steps.
"""
import shutil
from pathlib import Path

from PIL import Image

MODELS = ("HuggingFaceTB/SmolLM2-135M-Instruct", "facebook/dinov2-small")


def copy_model_configs(model_root: Path, dst: Path) -> None:
    for name in MODELS:
        (dst / name).mkdir(parents=True, exist_ok=True)
        for f in (model_root / name).iterdir():
            if f.name != "model.safetensors":
                shutil.copy(f, dst / name / f.name)


def shrink_data(src: Path, dst: Path, size: int = 96) -> None:
    for p in src.rglob("*"):
        if p.is_dir() or p.name == "manifest.json" or "geochat_bench" in p.parts:
            continue
        q = dst / p.relative_to(src)
        q.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and "grounding" not in p.parts:
            im = Image.open(p).convert("RGB")
            im.thumbnail((size, size))
            im.save(q, format="PNG" if p.suffix.lower() == ".png" else "JPEG", quality=60)
        else:
            shutil.copy(p, q)


if __name__ == "__main__":
    import os
    copy_model_configs(Path(os.environ["KDLIB_MODEL_ROOT"]), Path(".gpu/models"))
    shrink_data(Path("../shared/data"), Path(".gpu/data"))
