import sys, time, torch, statistics, dataclasses
from proto.models import load_model
from proto.fit import Fitter, FitRow, get_recipe, init_vector, embedding_std
from proto.start import load_start
from proto.sources import sample_texts
torch.set_num_threads(2)
lm = load_model("smollm2-135m", device="cpu")
e0, m0 = load_start("learned", lm)
print("norms e0 m0", float(e0.norm()), float(m0.norm()), "emb std", embedding_std(lm))
N = int(sys.argv[1]); K = int(sys.argv[2])
texts = [t for _, t in sample_texts(lm.tokenize, "britannica", N, K, seed=11) + sample_texts(lm.tokenize, "random-words", N, K, seed=11)]
rows = [FitRow(list(t), f"t{i}") for i, t in enumerate(texts)]
for name, lr, std in [("m0-frozen e0 lr0.2", 0.2, 0.0), ("m0-frozen e0 lr0.1 std0.03", 0.1, 0.03)]:
    rec = get_recipe("default", lr=lr, init_std=std, max_steps=200, restart_after=0)
    f = Fitter(lm, rec, batch_size=2*K, e_center=e0)
    t = time.time()
    res = f.fit(rows, m_mode="frozen", m=m0)
    st = [r.steps for r in res]; sol = sum(r.solved for r in res)
    print(name, "solved", sol, "/", len(res), "median", statistics.median(st), "steps", st, f"{time.time()-t:.0f}s", "disp", statistics.median(float((r.e-e0).norm()) for r in res), flush=True)
