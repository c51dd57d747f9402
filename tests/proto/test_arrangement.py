import pytest
import torch

from proto.arrangement import NAMES, Arrangement, prefix_ids, scored


def _vecs(B=2, d=3):
    e = torch.full((B, d), 1.0)
    m = torch.full((B, d), 2.0)
    return e, m


# What an output at each scored position must be conditioned on, as the paper defines it:
# an identity "model" returns its input, so scored(build(...)) shows which input each target
# t_1..t_N is read from.
EXPECTED = {
    "e_m": lambda n: ["e"] + ["m"] * (n - 1),
    "e_mN": lambda n: ["m"] * n,                  # e's own output is not scored
    "eN": lambda n: ["e"] * n,
    "eN2_mN2": lambda n: ["e"] * ((n + 1) // 2) + ["m"] * (n // 2),
    "em_alt": lambda n: ["e" if i % 2 == 0 else "m" for i in range(n)],
}


@pytest.mark.parametrize("name", [n for n in NAMES if n != "mem_ar"])
@pytest.mark.parametrize("prefix", [(), (7,), (7, 8)])
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_scored_positions_read_the_right_inputs(name, prefix, n):
    arr = Arrangement(name, prefix)
    e, m = _vecs()
    pe = torch.full((len(prefix), 3), -1.0) if prefix else None
    x = arr.build(e, m, n, pe)
    assert x.shape == (2, arr.input_length(n), 3)
    got = scored(x, arr, n)[0, :, 0].tolist()
    assert got == [1.0 if k == "e" else 2.0 for k in EXPECTED[name](n)]
    # the prefix is never scored
    assert -1.0 not in got


@pytest.mark.parametrize("prefix", [(), (5,)])
def test_mem_ar_scores_mem_then_teacher_forced_tokens(prefix):
    arr = Arrangement("mem_ar", prefix)
    n = 4
    e, _ = _vecs(1)
    tok = torch.arange(1, n + 1).float().reshape(1, n, 1).expand(1, n, 3) * 10
    pe = torch.full((len(prefix), 3), -1.0) if prefix else None
    x = arr.build(e, None, n, pe, tok)
    # output at mem predicts t_1, output at t_i predicts t_{i+1}; t_N is never an input
    assert scored(x, arr, n)[0, :, 0].tolist() == [1.0, 10.0, 20.0, 30.0]


def test_unknown_arrangement_and_empty_text_rejected():
    with pytest.raises(ValueError, match="unknown arrangement"):
        Arrangement("nope")
    with pytest.raises(ValueError):
        Arrangement("e_m").slots(0)


def test_prefix_specs(tiny):
    tok = tiny.tokenizer
    assert prefix_ids(tok, "") == ()
    assert prefix_ids(tok, "sink") == (tok.convert_tokens_to_ids("<|endoftext|>"),)
    assert prefix_ids(tok, "eos") == (tok.eos_token_id,)
    assert prefix_ids(tok, "ab") == tuple(tok("ab", add_special_tokens=False)["input_ids"])
