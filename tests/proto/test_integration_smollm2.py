"""Integration: the real default model (select: pytest -m integration)."""
import pytest

from proto.decode import h_lm, one_pass
from proto.fit import FitRow, Fitter, get_recipe

pytestmark = pytest.mark.integration

# Used by no other test and by no README example.
SENTENCE = "Every morning the baker opened her small shop before the sun rose over the hills."


def test_default_recipe_solves_a_16_token_sentence(smollm2):
    ids = smollm2.tokenize(SENTENCE)[:16]
    assert len(ids) == 16
    f = Fitter(smollm2, get_recipe("default", max_steps=600))
    r = f.fit([FitRow(ids, "s")])[0]
    assert r.solved, f"not solved in {r.steps} steps (accuracy {r.accuracy})"
    pred = one_pass(smollm2, f.arr, r.e[None], r.m[None], len(ids))
    assert smollm2.detokenize(pred[0].tolist()) == smollm2.detokenize(ids)


def test_identity_and_h_lm(smollm2):
    assert smollm2.name == "smollm2-135m" and smollm2.d_model == 576
    (h_nat, h_rand), how = h_lm(smollm2, [smollm2.tokenize("The cat sat on the mat."),
                                          smollm2.tokenize("mat the on sat cat The.")])
    assert "unscored" in how  # SmolLM2's tokenizer adds no BOS
    assert 0 < h_nat < h_rand  # natural word order is more predictable


def test_fit_names_the_shipped_learned_start(smollm2):
    from proto.fit.__main__ import recipe_start
    assert recipe_start(Fitter(smollm2, get_recipe("default"))) == \
        "e0 (learned start, proto/starts/smollm2-135m.pt)"
    assert recipe_start(Fitter(smollm2, get_recipe("paper"))).startswith("origin")


def test_shipped_learned_start_fits_sooner_than_the_origin(smollm2):
    """proto/starts/ holds a start learned on these weights; from it, 12 steps get further."""
    import dataclasses

    from proto.start import load_start, packaged_start
    assert packaged_start(smollm2) is not None
    e0, m0 = load_start("learned", smollm2)
    assert e0.shape == m0.shape == (576,)
    ids = smollm2.tokenize(SENTENCE)[:16]
    words = smollm2.tokenize("copper lantern seven quietly meadow orbit vinegar elbow "
                             "harbor pencil thunder almond")[:16]
    rows = [FitRow(ids, "s"), FitRow(words, "w")]
    rec = get_recipe("default_v1", lr=0.2)
    losses = {}
    for start in ("", "learned"):
        res = Fitter(smollm2, dataclasses.replace(rec, start=start)).fit(rows, max_steps=12)
        losses[start] = sum(r.loss for r in res) / len(res)
    assert losses["learned"] < losses[""] - 0.5, losses
