"""Each encoder kind learns through the frozen decoder; the decoder itself never changes."""
import dataclasses

import pytest
import torch

from encoder.config import ModelConfig
from encoder.losses import Decoder, regress_loss
from encoder.models import Encoder, pad_batch
from proto.arrangement import Arrangement, prefix_ids
from proto.models import load_model

TEXTS = ["cat sat", "a dog ran", "blue sky!", "hello"]


def _setup(kind, **kw):
    lm = load_model("tiny-random", device="cpu")
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, lora_rank=4, scratch_dim=32, scratch_heads=4, **kw)
    enc = Encoder(cfg, lm, torch.zeros(lm.d_model), torch.randn(lm.d_model) * 0.1)
    dec = Decoder.of(lm, Arrangement("e_m", prefix_ids(lm.tokenizer, "sink")))
    toks = [lm.tokenize(t) for t in TEXTS]
    ids, mask = pad_batch(toks, "cpu")
    return lm, enc, dec, toks, {"ids": ids, "mask": mask, "texts": TEXTS}


def _fit(enc, dec, toks, batch, steps=40, lr=3e-3):
    opt = torch.optim.Adam([p for p in enc.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        e = enc(batch)  # outside decoding(): there the adapters are off
        with enc.decoding():
            loss, acc = dec.loss(e, enc.m, toks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("kind,pooling", [("lora", "mean"), ("lora", "last"),
                                          ("scratch", "query"), ("scratch", "mean")])
def test_decode_loss_trains_the_encoder_not_the_decoder(kind, pooling):
    lm, enc, dec, toks, batch = _setup(kind, pooling=pooling)
    losses = _fit(enc, dec, toks, batch)
    assert losses[-1] < 0.6 * losses[0], losses[::10]
    assert all(p.grad is None for n, p in lm.model.named_parameters() if "lora_" not in n)


def test_hf_encoder_minilm_trains():
    lm, enc, dec, toks, batch = _setup("hf", hf_name="minilm", pooling="mean")
    assert enc.body.dim == 384
    losses = _fit(enc, dec, toks, batch, steps=15, lr=1e-3)
    assert losses[-1] < 0.8 * losses[0], losses


def test_untrained_encoder_with_zero_head_predicts_the_offset():
    lm, _, _, toks, batch = _setup("scratch")
    off = torch.randn(lm.d_model)
    enc = Encoder(ModelConfig(kind="scratch", scratch_dim=32, head_init=0.0), lm, off, None)
    assert torch.allclose(enc(batch), off.expand(len(toks), -1))


def test_lora_decoding_context_is_the_original_model():
    lm, enc, dec, toks, batch = _setup("lora")
    _fit(enc, dec, toks, batch, steps=5, lr=1e-2)  # adapters are now non-zero
    fresh = load_model("tiny-random", device="cpu")
    x = torch.tensor([toks[1]])
    with torch.no_grad():
        ref = fresh.model(input_ids=x).logits
        with enc.decoding():
            off = lm.model(input_ids=x).logits
        on = lm.model(input_ids=x).logits
    assert torch.allclose(off, ref, atol=1e-5)
    assert not torch.allclose(on, ref, atol=1e-3)


def test_regress_loss_takes_the_nearest_restart():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = [torch.tensor([[5.0, 5.0], [1.0, 0.0]]), None]
    assert regress_loss(e, t, "mse").item() == pytest.approx(0.0)
    assert regress_loss(e, [torch.tensor([[3.0, 0.0]]), None], "mse").item() == pytest.approx(2.0)
    assert regress_loss(e, [torch.tensor([[-2.0, 0.0]]), None], "cosine").item() == \
        pytest.approx(2.0)
    assert regress_loss(e, [None, None], "mse") is None


def test_nearest_targets_lower_the_decode_loss_and_leave_e_and_the_decoder_alone():
    from encoder.losses import nearest_targets
    lm, enc, dec, toks, batch = _setup("scratch")
    e = enc(batch)
    before = [p.detach().clone() for p in lm.model.parameters()]
    z, acc, z_acc = nearest_targets(dec, e, enc.m, toks, steps=5, lr=0.05)
    assert e.grad_fn is not None and not z.requires_grad   # nothing flows back through z
    with torch.no_grad():
        assert dec.loss(z, enc.m, toks)[0] < dec.loss(e, enc.m, toks)[0]
    assert torch.equal(acc, dec.accuracy(e.detach(), enc.m, toks))
    assert z_acc.shape == acc.shape and bool(((z_acc >= 0) & (z_acc <= 1)).all())
    assert all(torch.equal(a, b) for a, b in zip(before, lm.model.parameters()))
    assert all(p.grad is None for p in enc.parameters())


def test_focal_weighting_shrinks_the_loss_of_tokens_already_decoded():
    """(1 - p)^gamma: a token decoded with p near 1 contributes ~nothing, one with p near 0
    its full CE; gamma = 0 is plain CE."""
    lm, enc, dec, toks, batch = _setup("scratch")
    with torch.no_grad():
        e = enc(batch)
        plain, acc = dec.loss(e, enc.m, toks)
        focal, acc2 = dec.loss(e, enc.m, toks, focal_gamma=2.0)
        assert torch.equal(acc, acc2)
        assert 0 < focal < plain
        assert dec.loss(e, enc.m, toks, focal_gamma=0.0)[0] == plain
        # on an untrained encoder p(token) is tiny, so the weights are close to 1
        assert focal > 0.9 * plain


@pytest.mark.parametrize("kw", [dict(kind="positional"),
                                dict(kind="positional", pos_map="lowrank", pos_rank=8),
                                dict(kind="positional", pos_map="basis", pos_rank=4),
                                dict(kind="positional", residual_layers=1, whiten=True),
                                dict(kind="scratch", pooling="positional"),
                                dict(kind="lora", pooling="positional")])
def test_positional_encoders_start_at_the_offset_and_learn(kw):
    lm, _, dec, toks, batch = _setup("lora")   # a fresh model: lora adapters go into it
    off = torch.randn(lm.d_model)
    cfg = ModelConfig(positions=16, lora_rank=4, scratch_dim=32, scratch_heads=4, **kw)
    enc = Encoder(cfg, lm, off, torch.randn(lm.d_model) * 0.1)
    assert torch.allclose(enc(batch), off.expand(len(toks), -1))
    losses = _fit(enc, dec, toks, batch, lr=1e-2)
    assert losses[-1] < 0.6 * losses[0], losses[::10]
    assert all(p.grad is None for n, p in lm.model.named_parameters() if "lora_" not in n)


def test_positional_code_is_a_sum_over_positions():
    """Linear: each token's contribution depends on its position only, so swapping two
    tokens changes e, and a padded position contributes nothing."""
    lm, _, _, _, _ = _setup("scratch")
    enc = Encoder(ModelConfig(kind="positional", positions=8), lm, torch.zeros(lm.d_model), None)
    torch.nn.init.normal_(enc.pmap.A)
    ids, mask = pad_batch([[5, 9, 11], [9, 5, 11], [5, 9]], "cpu")
    e = enc({"ids": ids, "mask": mask, "texts": []})
    assert not torch.allclose(e[0], e[1])
    x = enc.body({"ids": ids, "mask": mask})
    want = sum(x[0, i] @ enc.pmap.A[i] for i in range(3))
    assert torch.allclose(e[0], want, atol=1e-4)
    assert torch.allclose(e[2], x[2, 0] @ enc.pmap.A[0] + x[2, 1] @ enc.pmap.A[1], atol=1e-4)


def test_positional_limits_are_refused():
    lm, _, _, _, _ = _setup("scratch")
    enc = Encoder(ModelConfig(kind="positional", positions=4), lm, torch.zeros(lm.d_model), None)
    ids, mask = pad_batch([[1, 2, 3, 4, 5]], "cpu")
    with pytest.raises(ValueError, match="longer than the encoder's 4 positions"):
        enc({"ids": ids, "mask": mask, "texts": []})
    assert enc.max_tokens == 4
    with pytest.raises(ValueError, match="pooling positional needs the decoder's own tokens"):
        ModelConfig(kind="hf", pooling="positional")


def test_unrolled_loss_replays_the_refinement_steps_and_reaches_the_encoder():
    """The unrolled loss is the decode loss after K of encoder.refine's steps (the fitter's
    AdamW at the refinement lr), and its gradient reaches the encoder's weights."""
    from encoder.losses import unrolled
    from encoder.refine import curve, refine_recipe
    lm, enc, dec, toks, batch = _setup("scratch", pooling="positional")
    e = enc(batch)
    loss, acc0, acc_k = unrolled(dec, e, enc.m, toks, 3, 0.05)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    rec = refine_recipe(0.05, 3)
    rec = dataclasses.replace(rec, target_accuracy=1.0)
    ref = curve(lm, rec, toks, e.detach(), enc.m, None, ks=(0, 3))["by_k"]
    assert ref[0]["acc"] == pytest.approx(acc0.mean().item(), abs=1e-6)
    assert ref[3]["acc"] == pytest.approx(acc_k.mean().item(), abs=0.05)
