"""Region captioning ROUGE-1 / ROUGE-L / METEOR (kdlib.evaluate.captioning)."""

from __future__ import annotations

import pytest

from kdlib.data.geochat_bench import RegionCaptionAnswer
from kdlib.evaluate.captioning import caption_tokens, captioning_metrics, meteor, rouge_scores

REF, HYP = "1 white vehicle", "<p>1 vehicle at the right.</p>"


def caption(reference: str, prediction: str) -> RegionCaptionAnswer:
    return RegionCaptionAnswer("q", "img", "{<1><2><3><4>|<90>}", prediction, reference, "ref", "SIOR", "small")


def test_tokens() -> None:
    assert caption_tokens("<p>1 Vehicle at the right.</p>") == ["1", "vehicle", "at", "the", "right"]
    assert caption_tokens("<p>a</p><p>b</p>") == ["a", "b"]


def test_rouge_by_hand() -> None:
    # 2 shared unigrams ("1", "vehicle"), |hyp| = 5, |ref| = 3: P = 2/5, R = 2/3, F = 2PR/(P+R) = 1/2;
    # the longest common subsequence is also "1 vehicle".
    assert rouge_scores(REF, HYP) == pytest.approx({"ROUGE-1": 0.5, "ROUGE-L": 0.5})
    # Reordering keeps ROUGE-1 at 1 but cuts the LCS to 2 of 3 words.
    assert rouge_scores("small white ship", "white small ship") == pytest.approx({"ROUGE-1": 1.0, "ROUGE-L": 2 / 3})
    # The Porter stemmer makes "ships" match "ship".
    assert rouge_scores("ships", "ship")["ROUGE-1"] == pytest.approx(1.0)


def test_meteor_by_hand() -> None:
    # m = 2, P = 2/5, R = 2/3, Fmean = PR / (0.9 P + 0.1 R) = 0.625; the match is 2 chunks
    # ("1" and "vehicle" are not adjacent in the reference): penalty 0.5 (2/2)^3 -> 0.3125.
    assert meteor(REF, HYP) == pytest.approx(0.3125)


def test_meteor_uses_wordnet_synonyms() -> None:
    # "car" and "auto" share the WordNet synset car.n.01: 3 matches in one chunk,
    # Fmean 1, penalty 0.5 (1/3)^3; without WordNet only 2 words would match (0.625 * ...).
    assert meteor("a red auto", "a red car") == pytest.approx(1 - 0.5 / 27)
    assert meteor("a red auto", "a red bus") < 0.7


def test_means_over_answers_in_percent() -> None:
    scores = captioning_metrics([caption(REF, HYP), caption("a ship", "A ship.")])
    assert scores["ROUGE-1"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert scores["METEOR"] == pytest.approx(100 * (0.3125 + meteor("a ship", "a ship")) / 2)
    assert scores["n"] == 2
    with pytest.raises(ValueError, match="no region-caption answers"):
        captioning_metrics([])
