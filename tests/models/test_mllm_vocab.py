import pytest

from kdlib.models import build_pair, build_tokenizer, check_same_vocab


def test_same_vocab_passes_for_the_tiny_pair(pair):
    check_same_vocab(pair.tokenizer, pair.tokenizer)
    check_same_vocab(pair.teacher, pair.student)


def test_different_tokenizers_are_named_with_sizes(tokenizer, sentences):
    other = build_tokenizer(sentences[:2], 300)
    with pytest.raises(ValueError, match=rf"vocabularies differ: {len(tokenizer)} vs {len(other)} tokens"):
        check_same_vocab(tokenizer, other)


def test_models_with_different_vocab_sizes_fail(tiny, tokenizer, sentences):
    other = build_tokenizer(sentences[:2], 300)
    teacher = build_pair(tiny, tokenizer).teacher
    student = build_pair(tiny, other).student
    with pytest.raises(ValueError, match=f"vocab_size {len(tokenizer)} vs {len(other)}"):
        check_same_vocab(teacher, student)
    with pytest.raises(TypeError, match="two tokenizers or two models"):
        check_same_vocab(tokenizer, student)
