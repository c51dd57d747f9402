"""eval.chunk_table: the C x K grid from the encoder's e and from e0 on the same chunks, its
K = 0 column the encoder's own one-pass accuracy, and its refusals."""
import json
from pathlib import Path

import pytest

from encoder.encode import main as encode_main
from eval.chunk_table import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def positional(tiny_positional):
    return tiny_positional


def test_grid_cells_and_the_encoders_k0_is_what_encode_decodes(positional, tmp_path, capsys):
    out = tmp_path / "t"
    argv = [f"checkpoint={positional}", "chunks=[2,4]", "ks=[0,2]", "sentences=2",
            "paragraphs=1", f"out={out}", "mlflow=false", "threads=1"]
    assert main(argv) == 0
    rep = json.loads((out / "results.json").read_text())
    cells = rep["cells"]
    assert len(cells) == 2 * 2 * 2 * 2          # sets x starts x C x K
    assert (out / "chunk_table.png").is_file() and "| sentences | encoder | 2 |" in \
        (out / "table.md").read_text()
    assert all(0 <= x["token_accuracy"] <= 1 and 0 <= x["exact"] <= 1 for x in cells)
    capsys.readouterr()
    # the encoder alone (K = 0) at C = 4 on the sentences: encoder.encode chunk=4's number
    texts = (ROOT / "configs/eval/sentences.txt").read_text().splitlines()[:2]
    argv = ["--checkpoint", str(positional), "chunk=4", "mlflow=false",
            "--out", str(tmp_path / "e.safetensors")]
    for t in texts:
        argv += ["--text", t]
    assert encode_main(argv) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cell = next(x for x in cells if (x["set"], x["start"], x["chunk"], x["k"])
                == ("sentences", "encoder", 4, 0))
    assert cell["token_accuracy"] == pytest.approx(got["token_accuracy"], abs=1e-6)
    assert cell["exact"] == pytest.approx(got["exact_match"], abs=1e-6)


@pytest.mark.parametrize("args, says", [
    (["chunks=[9]"], "more than the encoder's maximum of 8"),
    (["chunks=[]"], "chunks must be"),
    (["starts=[e1]"], "starts must name"),
    (["sentences=999"], "has 64 texts"),
])
def test_bad_inputs_are_one_line(positional, tmp_path, capsys, args, says):
    out = tmp_path / "t"
    assert main([f"checkpoint={positional}", f"out={out}", "mlflow=false", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and says in err[0]
    assert not out.exists()
