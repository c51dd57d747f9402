#!/usr/bin/env bash
# Locality of two fitting recipes on the same texts (configs/data_gen/locality-compare.yaml).
#   bash docs/research/locality-connectivity/same_texts.sh      # ~18 min on a 2-core CPU
# Each recipe builds its own corpus (outputs/corpus/locality-<name>), then eval.locality runs on
# it; the JSON lines land in docs/research/locality-connectivity/same-texts-<name>.json.
set -euo pipefail
cd "$(dirname "$0")/../../.."
py=${PY:-.venv/bin/python}
here=docs/research/locality-connectivity
run() {
  name=$1; shift
  $py -m data_gen.build --config configs/data_gen/locality-compare.yaml \
      out=outputs/corpus/locality-$name "$@"
  $py -m eval.locality --corpus outputs/corpus/locality-$name | tail -n 1 > $here/same-texts-$name.json
}
run default
run start m_init=start recipe=default recipe_overrides.max_steps=200
