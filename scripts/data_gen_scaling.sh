#!/usr/bin/env bash
# Two-rank scaling of data_gen.build on this machine, measured side by side in one run:
# the same corpus (configs/data_gen/scaling.yaml) built by 1 rank with all cores' threads,
# then by 2 ranks (RANK/WORLD_SIZE, as torchrun sets them) with half the threads each.
#   scripts/data_gen_scaling.sh            # ~6 min on a 2-core CPU
# Last line: JSON with both wall times, speedup and efficiency (= speedup / 2), and whether
# the two corpora hold the same texts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CORES=$(nproc)
HALF=$(( CORES / 2 > 0 ? CORES / 2 : 1 ))
OUT=${OUT:-outputs/scaling}
rm -rf "$OUT"; mkdir -p "$OUT"
export PROTOSPACE_NO_MLFLOW=1
t0=$(date +%s.%N)
$PY -m data_gen.build --config configs/data_gen/scaling.yaml out="$OUT/one" threads="$CORES" \
    > "$OUT/one.json" 2> "$OUT/one.err"
t1=$(date +%s.%N)
RANK=0 WORLD_SIZE=2 OMP_NUM_THREADS=$HALF $PY -m data_gen.build --config configs/data_gen/scaling.yaml \
    out="$OUT/two" threads="$HALF" > "$OUT/two-r0.json" 2> "$OUT/two-r0.err" &
P0=$!
RANK=1 WORLD_SIZE=2 OMP_NUM_THREADS=$HALF $PY -m data_gen.build --config configs/data_gen/scaling.yaml \
    out="$OUT/two" threads="$HALF" > "$OUT/two-r1.json" 2> "$OUT/two-r1.err"
wait $P0
t2=$(date +%s.%N)
$PY - "$OUT" "$t0" "$t1" "$t2" <<'PYEOF'
import json, sys
from pathlib import Path
from data_gen import corpus as K
out, t0, t1, t2 = sys.argv[1], *map(float, sys.argv[2:])
last = lambda p: json.loads(Path(out, p).read_text().strip().splitlines()[-1])
one, r0, r1 = last("one.json"), last("two-r0.json"), last("two-r1.json")
ids = lambda c: sorted(K.read_table(Path(out, c), K.SHARDS, ["text_id"]).column("text_id").to_pylist())
w1, w2 = t1 - t0, t2 - t1
c1, c2 = one["chunk_seconds"], max(r0["chunk_seconds"], r1["chunk_seconds"])
res = {"texts": one["texts"], "one_rank_s": round(w1, 1), "two_ranks_s": round(w2, 1),
       "speedup": round(w1 / w2, 3), "efficiency": round(w1 / w2 / 2, 3),
       "chunk_phase_speedup": round(c1 / c2, 3), "chunk_phase_efficiency": round(c1 / c2 / 2, 3),
       "texts_rank0": r0["texts_fitted"], "texts_rank1": r1["texts_fitted"],
       "solved_one": one["solved"], "solved_two": max(r0["solved"], r1["solved"]),
       "same_texts": ids("one") == ids("two"), "status_two": "complete" if "complete" in (r0["status"], r1["status"]) else "partial"}
print(json.dumps(res))
PYEOF
