#!/usr/bin/env bash
# Locality under two corpus recipes on the same 64 texts (make demo's sources, N = 8), half of
# them fitted twice: the project's default corpus recipe (m frozen at a random vector,
# default_v2 from the sink init) and the locality-seeking one (m frozen at the learned start's
# m0, every e fitted from e0 plus its small init noise: configs/data_gen/encoder.yaml's recipe).
# Prints each build's summary (steps are in its build.json) and locality line (2-core CPU,
# ~20 min in all, most of it the random-m build).
#   bash docs/research/locality-connectivity/recipes.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=outputs/locality-recipes
COMMON=(--config configs/data_gen/demo.yaml restart_fraction=0.5 pairs_per_chunk=0 mlflow=false)
.venv/bin/python -m data_gen.build "${COMMON[@]}" out=$OUT/start-m0 | tail -1
.venv/bin/python -m data_gen.build "${COMMON[@]}" out=$OUT/random-m m_init=random \
    recipe=default_v2 "recipe_overrides={max_steps: 400}" | tail -1
for c in start-m0 random-m; do
  .venv/bin/python -m eval.locality --corpus $OUT/$c semantic=false mlflow=false \
      out=$OUT/$c-locality | tail -1
done
.venv/bin/python - <<'PY'
import numpy as np
from data_gen.corpus import read_table
for c in ("start-m0", "random-m"):
    t = read_table(f"outputs/locality-recipes/{c}", columns=["steps", "solved"]).to_pylist()
    ok = [r["steps"] for r in t if r["solved"]]
    print(f"{c}: {len(ok)}/{len(t)} rows solved, median steps {np.median(ok):.1f}, "
          f"row-steps {sum(r['steps'] for r in t)}")
PY
