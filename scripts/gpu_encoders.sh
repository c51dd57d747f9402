#!/usr/bin/env bash
# The GPU encoders in one device call, through the product's own commands: the 8-position
# linear code (configs/encoder/gpu-n8.yaml, a 3-minute box) and the 16-position one
# (gpu-n16.yaml, 3 minutes), each trained by encoder.train and evaluated by encoder.evaluate
# on held-out stream texts with the refinement curve, and on configs/eval/sentences.txt in
# chunks of 8 tokens; about 9 minutes on one H100. The targets, what a device needs besides
# the working tree (packages, the model) and how a result ships:
# docs/research/encoder/gpu-runs.md.
#
#   bash scripts/gpu_encoders.sh [DEST]            # DEST: $OUT where set, else WORK/out
#   TINY=1 bash scripts/gpu_encoders.sh /tmp/d     # the same sequence, tiny model, a CPU, < 1 min
#
# Environment: TINY=1 (tiny in-process model), PYTHON (default .venv/bin/python, else python3),
# WORK (the runs; default outputs/gpu-encoders), ONLY ("n8" or "n16"; default both),
# N8_MINUTES / N16_MINUTES (replace a config's time box: the issue's 2-3 M texts at N = 8 need
# ONLY=n8 N8_MINUTES=8, a call of its own).
#
# DEST receives at most 8 files, none over 15 MiB, no folders (what a device call brings
# back): result.json (the final JSON line) and gpu-encoders.tar.00, .01, ... (one tar cut in
# 15 MiB parts: the 16-position encoder.pt alone is 21 MB in fp32). The tar holds, per
# encoder, encoder.pt, summary.json, history.json, eval.md, config.yaml, the evaluations'
# results.json and every command's log. Unpack: cat DEST/gpu-encoders.tar.* | tar -x -C DIR
# A rerun with the same WORK resumes the trainings (finished ones stop at once).
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
WORK=${WORK:-outputs/gpu-encoders}
DEST=${1:-${OUT:-$WORK/out}}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
NAMES=${ONLY:-n8 n16}
export PYTHONUNBUFFERED=1
# the device has no MLflow; the tar carries what a run would log
export PROTOSPACE_NO_MLFLOW=1

if [ "${TINY:-0}" = 1 ]; then
  # the configs' path (stream, bf16 JSON, time box, resume) on the tiny model: its byte
  # tokenizer makes Britannica slow to cut, so the plays alone; m trains (no learned start)
  TRAIN=(llm=tiny-random m=learned "data.stream.prose_sources=[plays]" data.eval_texts=8
         train.global_batch=16 train.micro_batch=16 train.steps=12 train.max_minutes=0.05
         train.eval_every=6 train.save_every=6 threads=1 device=cpu)
  EVAL=(curve_texts=4 "curve_steps=[0,5,10]" device=cpu)
  STREAM_LIMIT=8 FILE_LIMIT=8 DEFAULT_MIN=0.05
else
  TRAIN=()
  # 256 curve texts: the refinement targets are read at 0.97 / 80 %, which 64 texts resolve
  # only to about +-5 points
  EVAL=(curve_texts=256)
  STREAM_LIMIT=512 FILE_LIMIT=0 DEFAULT_MIN=
fi

STAMP=$(date -u +%Y-%m-%d)
PACK=$WORK/pack/gpu-encoders-$STAMP
mkdir -p "$WORK/logs" "$DEST"
rm -rf "$WORK/pack"

step() {  # step LOG COMMAND...: run a product command, its output in LOG, its JSON line kept
  local log=$1; shift
  echo "== $* ==" >&2
  local t=$(date +%s)
  if ! "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "error: $* failed (log: $log)" >&2
    exit 2
  fi
  echo "   $(( $(date +%s) - t )) s: $(tail -n 1 "$log" | cut -c1-200)" >&2
}

for NAME in $NAMES; do
  case $NAME in n8|n16) ;; *) echo "error: ONLY=$NAME: give n8 or n16" >&2; exit 2 ;; esac
  VAR=$(echo "$NAME" | tr a-z A-Z)_MINUTES
  MIN=${!VAR:-$DEFAULT_MIN}
  BOX=(); [ -n "$MIN" ] && BOX=(train.max_minutes="$MIN")
  RUN=$WORK/$NAME
  step "$WORK/logs/$NAME-train.log" "$PY" -m encoder.train \
    --config "configs/encoder/gpu-$NAME.yaml" out="$RUN" mlflow=false "${TRAIN[@]}" "${BOX[@]}"
  step "$WORK/logs/$NAME-eval-stream.log" "$PY" -m encoder.evaluate --checkpoint "$RUN" \
    texts=stream curve=true limit=$STREAM_LIMIT out="$WORK/$NAME-eval-stream" mlflow=false \
    "${EVAL[@]}"
  step "$WORK/logs/$NAME-eval-sentences.log" "$PY" -m encoder.evaluate --checkpoint "$RUN" \
    texts=file --texts_file configs/eval/sentences.txt chunk=8 curve=true \
    limit=$FILE_LIMIT out="$WORK/$NAME-eval-sentences" mlflow=false "${EVAL[@]}"
  mkdir -p "$PACK/$NAME"
  cp "$RUN"/{encoder.pt,summary.json,history.json,config.yaml} "$PACK/$NAME/"
  [ -f "$RUN/eval.md" ] && cp "$RUN/eval.md" "$PACK/$NAME/"
  cp "$WORK/$NAME-eval-stream/results.json" "$PACK/$NAME/eval-stream.json"
  cp "$WORK/$NAME-eval-sentences/results.json" "$PACK/$NAME/eval-sentences.json"
  cp "$WORK/logs/$NAME"-*.log "$PACK/$NAME/"
done

"$PY" scripts/gpu_encoders_summary.py "$WORK" $NAMES --wall $(( $(date +%s) - T0 )) \
  >"$PACK/result.json"
rm -f "$DEST"/gpu-encoders.tar.*
tar -cf - -C "$WORK/pack" "gpu-encoders-$STAMP" | split -b 15M -d -a 2 - "$DEST/gpu-encoders.tar."
cp "$PACK/result.json" "$DEST/result.json"
cat "$DEST/result.json"
