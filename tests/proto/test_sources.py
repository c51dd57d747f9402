import pytest

from proto.sources import SourceError, gutenberg_documents, sample_texts, text_id


def test_random_words_are_deterministic_and_exact_length(tiny):
    a = sample_texts(tiny.tokenize, "random-words", 12, 3, seed=1)
    b = sample_texts(tiny.tokenize, "random-words", 12, 3, seed=1)
    assert a == b and all(len(ids) == 12 for _, ids in a)
    assert a != sample_texts(tiny.tokenize, "random-words", 12, 3, seed=2)


def test_gutenberg_prose_is_cleaned_and_cut(tiny):
    (name, text), = gutenberg_documents("britannica")
    assert "Stratford" in text and "###" not in text
    xs = sample_texts(tiny.tokenize, "britannica", 20, 5)
    assert len(xs) == 5 and all(len(ids) == 20 for _, ids in xs)
    assert len({tuple(ids) for _, ids in xs}) == 5


def test_unknown_source_and_stable_ids():
    with pytest.raises(SourceError):
        sample_texts(lambda t: [1], "nope", 4, 1)
    assert text_id("a", [1, 2]) == text_id("a", [1, 2]) != text_id("b", [1, 2])
