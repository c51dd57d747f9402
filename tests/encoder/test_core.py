"""prepare(): the corpora an encoder trains on."""
import shutil

import numpy as np
import pytest

from encoder.data import Example

from .conftest import encoder_config


def _prepare(tmp_path, corpus, *overrides):
    from encoder.core import prepare
    from proto.models import load_model
    cfg = encoder_config(tmp_path / "run", corpus, "data.raw=[]", *overrides)
    return prepare(cfg, lm=load_model("tiny-random", device="cpu"))


def test_extra_corpora_add_their_solved_es(tmp_path, enc_corpus):
    one = _prepare(tmp_path, enc_corpus)
    copy = tmp_path / "again"
    shutil.copytree(enc_corpus, copy)
    both = _prepare(tmp_path, enc_corpus, f"data.extra_corpora=[{copy}]")
    n_targets = [sum(len(x.targets) for x in s.split.train_corpus if x.targets is not None)
                 for s in (one, both)]
    assert len(both.split.train_corpus) == len(one.split.train_corpus)
    assert n_targets[1] == 2 * n_targets[0] > 0
    assert both.corpus["extra"][0]["path"] == str(copy)


def test_an_extra_corpus_with_another_m_is_refused(tmp_path, enc_corpus):
    from data_gen.corpus import load_m, save_m
    from encoder.core import EncoderError
    other = tmp_path / "other-m"
    shutil.copytree(enc_corpus, other)
    m, meta = load_m(other)
    save_m(other, m + 1, meta)
    with pytest.raises(EncoderError, match="another arrangement or m"):
        _prepare(tmp_path, enc_corpus, f"data.extra_corpora=[{other}]")


def test_merge_keeps_new_texts_and_joins_the_es_of_shared_ones():
    from encoder.core import merge_examples

    def ex(tid, targets):
        return Example(tid, "s", "c", [1, 2], "t", targets, 0.5)
    a = [ex("x", np.zeros((1, 4), np.float32)), ex("y", None)]
    b = [ex("x", np.ones((2, 4), np.float32)), ex("z", None)]
    out = {x.text_id: x for x in merge_examples(a, b)}
    assert sorted(out) == ["x", "y", "z"] and out["x"].targets.shape == (3, 4)
    assert a[0].targets.shape == (1, 4)  # the inputs are not changed
