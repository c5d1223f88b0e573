#!/usr/bin/env bash
# Train the shipped classifiers on one GPU machine, from the payload recipes/gpu_payload.py packs (<= 64 MiB).
#   bash recipes/gpu_train.sh PAYLOAD OUT [--set KEY=VALUE ...]    # extra --set go to every run (smoke tests)
# Five runs share the GPU at once (each is small): pneumonia then pneumoniamnist; `all` and `covid3`
# leave-one-source-out with their final models; `all` and `covid3` on an in-source patient split (the
# in-source column of docs/RESULTS.md, per source by recipes/eval_recorded_split.py). OUT: one folder per run.
set -u
PAYLOAD=${1:?payload folder}; OUT=${2:?out folder}; shift 2
D=$PAYLOAD/data
mkdir -p "$OUT" /tmp/site
[ -f "$D/img.zip" ] && { python3 -m zipfile -e "$D/img.zip" "$D" || exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$PAYLOAD"/wheels/*.whl || exit 1
export PYTHONPATH=$PWD/src:$PWD/$PAYLOAD/site:/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1
train() {  # NAME RECIPE SOURCE [--set ...]
  local name=$1 recipe=$2 source=$3; shift 3
  python3 -m cxrkit.cli train "$recipe" --set "data.sources=[$source]" --set "out=$OUT/$name" "$@" \
    >"$OUT/$name.log" 2>&1
  echo "$name: exit $? after ${SECONDS}s"
}
SECONDS=0
{ train pneumonia recipes/pneumonia.yaml "$D/kaggle.csv" "$@"
  train pneumoniamnist recipes/pneumoniamnist.yaml "$D/pneumoniamnist.npz" "$@"; } &
train all recipes/all.yaml "$D/all.csv" "$@" &
train covid3 recipes/covid3_gpu_loso.yaml "$D/covid3.csv" "$@" &
for pair in all:all covid3:covid3_gpu_loso; do  # in-source: a patient split of the same sources, per source
  name=${pair%%:*} recipe=recipes/${pair##*:}.yaml
  { train ${name}_split "$recipe" "$D/$name.csv" --set data.validation=split --set data.val=0.15 "$@"
    python3 recipes/eval_recorded_split.py "$OUT/${name}_split/bundle" "$D/$name.csv" --out "$OUT/${name}_split/by_source" \
      >>"$OUT/${name}_split.log" 2>&1; } &
done
wait
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
