import pytest

from kdlib.models import IMAGE_TOKEN, build_tokenizer, image_token_id
from kdlib.models.tokenizer import SPECIAL_TOKENS


def test_special_tokens_have_fixed_ids_and_roles(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == SPECIAL_TOKENS[:4]
    assert image_token_id(tokenizer) == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)


def test_training_is_deterministic_and_bounded(sentences):
    a, b = build_tokenizer(sentences, 300), build_tokenizer(list(sentences), 300)
    assert a.get_vocab() == b.get_vocab()
    assert len(a) <= 300


def test_round_trip_bos_and_one_id_per_image_token(tokenizer):
    text = "USER: " + IMAGE_TOKEN * 3 + "\nunseen wörds 123 ASSISTANT: yes"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(image_token_id(tokenizer)) == 3
    assert tokenizer.unk_token_id not in ids  # byte-level: nothing is unknown
    assert tokenizer.decode(ids, skip_special_tokens=False) == tokenizer.bos_token + text


def test_too_small_vocabulary_and_empty_texts_are_errors(sentences):
    with pytest.raises(ValueError, match="must exceed"):
        build_tokenizer(sentences, 100)
    with pytest.raises(ValueError, match="non-empty"):
        build_tokenizer(["", ""], 400)
