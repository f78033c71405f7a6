"""Choosing the teacher layers a cut student keeps: candidates, the reversible cut, the scores."""

import copy
import itertools
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from kdlib.models import drop_layers
from kdlib.models.layer_choice import (best_keep_set, candidate_sets, caption_texts, contiguous_cuts, cut_view,
                                       layer_choice_table, predicted_logprobs, score_cut)
from kdlib.data.collate import text_batch

TEXTS = ["many planes are parked next to the terminal buildings", "a baseball field surrounded by green trees",
         "Is there a road in the image? yes", "a chat between a curious user and an assistant"]


@pytest.fixture(scope="module")
def llm(tokenizer):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=2)).eval()


def test_contiguous_cuts_are_every_inner_block():
    cuts = set(contiguous_cuts(6, 4).values())
    by_search = {tuple(k) for k in itertools.combinations(range(6), 4)
                 if {0, 5} <= set(k) and max(set(range(6)) - set(k)) - min(set(range(6)) - set(k)) == 1}
    assert cuts == by_search and len(cuts) == 3
    sets = candidate_sets(30, 16)
    assert sets["first 16"] == tuple(range(16)) and sets["uniform 16"][0] == 0 and sets["uniform 16"][-1] == 29
    assert all(len(k) == 16 for k in sets.values())
    with pytest.raises(ValueError, match="keep=30"):
        contiguous_cuts(30, 30)


def test_the_cut_view_is_the_cut_model_and_is_undone(llm, tokenizer):
    batch = text_batch(tokenizer, TEXTS, 32)
    keep = (0, 4, 5)
    with torch.no_grad():
        full = predicted_logprobs(llm, batch)
        cut = predicted_logprobs(drop_layers(copy.deepcopy(llm), keep), batch)
        with cut_view(llm, keep) as view:
            assert len(view.model.layers) == view.config.num_hidden_layers == 3
            torch.testing.assert_close(predicted_logprobs(view, batch), cut)
        again = predicted_logprobs(llm, batch)
    assert llm.config.num_hidden_layers == len(llm.model.layers) == 6
    assert [layer.self_attn.layer_idx for layer in llm.model.layers] == list(range(6))
    torch.testing.assert_close(again, full, rtol=0, atol=0)


def test_scores_match_the_models_own_loss(llm, tokenizer):
    batch = text_batch(tokenizer, TEXTS, 32)
    with torch.no_grad():
        teacher = [predicted_logprobs(llm, batch)]
        scores = score_cut(llm, [batch], teacher)
        loss = llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert scores["kl_to_teacher"] == pytest.approx(0.0, abs=1e-6)
    assert scores["perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-5)
    assert scores["tokens"] == int((batch["labels"][:, 1:] != -100).sum())


def test_table_ranks_every_candidate_and_names_the_best(llm, tokenizer):
    table = layer_choice_table(llm, tokenizer, TEXTS, keeps=(4,), batch_size=3)
    assert len(table) == 1 + len(candidate_sets(6, 4))
    assert table.loc[0, "name"] == "teacher" and table.loc[0, "kl_to_teacher"] == pytest.approx(0.0, abs=1e-6)
    fours = table[table["keep"] == 4]
    assert best_keep_set(table, 4) == fours.sort_values("perplexity").iloc[0]["kept"]
    assert (fours["kl_to_teacher"] > 0).all()
    with pytest.raises(ValueError, match="no candidate keeping 3"):
        best_keep_set(table, 3)


def test_caption_texts_are_spread_over_the_split(data_root):
    texts = caption_texts(data_root, 20)
    assert len(texts) == 20 and all(isinstance(t, str) and t for t in texts)
    assert len(set(texts)) > 10
