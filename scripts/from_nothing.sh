#!/usr/bin/env bash
# One ConvVAE agent built from nothing on this machine, with its wall time: random-policy rollouts -> V -> M -> C by
# real-env CMA-ES from zero -> rollouts of that C with exploration noise -> M again on both -> C from zero in an
# ensemble of three dreams -> real-env CMA-ES fine-tuning. No shipped file and no earlier run is read.
#
#   bash scripts/from_nothing.sh            # run (or resume) the build into $R (default runs/from_nothing)
#   bash scripts/from_nothing.sh report     # the wall time of every stage so far, and the total
#   DRY_RUN=1 bash scripts/from_nothing.sh  # print the commands only
#
# Resumable: a finished stage is skipped; an interrupted one starts again (collection keeps the episodes it has,
# training goes on from its .resume.pt). The wall time of every attempt goes to $R/timing.tsv, an interrupted one's
# up to its last heartbeat (every 20 s), so the total counts the time lost to interruptions as well.
# The agent is then scored once on a fresh final block (not part of the build's time):
#   dream-explorer evaluate --vision $R/vision.safetensors --memory $R/memory.safetensors \
#       --controller $R/controller.safetensors --episodes 100 --seed <fresh final block>
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-.venv/bin/dream-explorer}
PY=${PY:-.venv/bin/python}
R=${R:-runs/from_nothing}
DATA=${DATA:-data/from_nothing}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$R"

run() {  # print the command; run it unless DRY_RUN is set
    echo "+ $*"
    if [ -z "${DRY_RUN:-}" ]; then "$@"; fi
}

resume_if() {  # resume_if OUT: --resume when OUT's training state exists (an interrupted attempt left it)
    if [ -e "${1%.safetensors}.resume.pt" ] && [ -z "${DRY_RUN:-}" ]; then echo --resume; fi
}

close_interrupted() {  # an attempt with no end: count it up to its last heartbeat
    local start beat name f
    for f in "$R"/.attempt.*.start; do
        [ -e "$f" ] || continue
        name=${f#"$R"/.attempt.}; name=${name%.start}
        start=$(cat "$f"); beat=$(cat "$R/.attempt.$name.beat" 2>/dev/null || echo "$start")
        printf '%s\t%d\tinterrupted\t%s\n' "$name" $((beat - start)) "$(date -u -d "@$beat" +%FT%TZ)" >>"$R/timing.tsv"
        rm -f "$f" "$R/.attempt.$name.beat"
    done
}

stage() {  # stage NAME FUNCTION: run FUNCTION unless stage NAME finished before; log its wall time
    local name=$1 fn=$2
    if [ -z "${DRY_RUN:-}" ] && grep -q "^$name	.*	done	" "$R/timing.tsv" 2>/dev/null; then
        echo "== $name: done before, skipped"
        return
    fi
    echo "== $name"
    if [ -n "${DRY_RUN:-}" ]; then "$fn"; return; fi
    local t0 beat_pid
    t0=$(date +%s)
    echo "$t0" >"$R/.attempt.$name.start"
    (while true; do date +%s >"$R/.attempt.$name.beat"; sleep 20; done) >/dev/null 2>&1 &
    beat_pid=$!
    "$fn"
    kill "$beat_pid" 2>/dev/null || true
    printf '%s\t%d\tdone\t%s\n' "$name" $(($(date +%s) - t0)) "$(date -u +%FT%TZ)" >>"$R/timing.tsv"
    rm -f "$R/.attempt.$name.start" "$R/.attempt.$name.beat"
}

report() {
    close_interrupted
    if [ ! -e "$R/timing.tsv" ]; then echo "no stage has run yet ($R/timing.tsv)"; return; fi
    awk -F'\t' '{ s += $2; printf "%-22s %7.1f min  %s\n", $1, $2 / 60, $3 }
        END { printf "%-22s %7.1f min\n", "total", s / 60 }' "$R/timing.tsv"
}

# The track seeds: training range (below 900,000), fresh for this recipe.
RANDOM_SEED=810000   # 200 random-policy episodes
AGENT_SEED=811000    # 100 episodes of the first controller with exploration noise

collect_random() { run "$D" collect --episodes 200 --seed $RANDOM_SEED --workers 2 --out-dir "$DATA/random"; }
train_vision() {
    # Ha's ConvVAE, 2 epochs over every 2nd frame (bfloat16 autocast where the CPU has it)
    run env OMP_NUM_THREADS=2 "$D" train-vision --model conv_vae --data-dir "$DATA/random" \
        --out "$R/vision.safetensors" --epochs 2 --frame-stride 2 --seed 0 $(resume_if "$R/vision.safetensors")
}
encode_random() {
    run env OMP_NUM_THREADS=2 "$D" encode --data-dir "$DATA/random" --vision "$R/vision.safetensors" \
        --out "$R/latents_random.npz"
}
train_memory0() {
    run env OMP_NUM_THREADS=2 "$D" train-memory --latents "$R/latents_random.npz" --out "$R/memory0.safetensors" \
        --epochs 20 --seed 0 $(resume_if "$R/memory0.safetensors")
}
controller0() {
    # real-env CMA-ES from zero weights: 16 candidates x 1 episode, cut after 50 steps without reward; the CMA-ES
    # mean checked on 4 model-selection tracks every 5 generations
    run "$D" train-controller --evaluator real --vision "$R/vision.safetensors" --memory "$R/memory0.safetensors" \
        --latents "$R/latents_random.npz" --out "$R/controller0.safetensors" --population 16 --rollouts 1 \
        --generations 20 --sigma0 0.1 --early-stop-patience 50 --real-check-every 5 --real-check-episodes 4 \
        --check-candidate mean --workers 2 --threads 1 --seed 0 $(resume_if "$R/controller0.safetensors")
}
collect_agent() {
    # on-road driving with recoveries: that controller, steering noise 0.1 and random excursions off its line
    run "$D" collect --policy controller --vision "$R/vision.safetensors" --memory "$R/memory0.safetensors" \
        --controller "$R/controller0.safetensors" --noise-std 0.1 --excursion-prob 0.005 --episodes 100 \
        --seed $AGENT_SEED --workers 2 --out-dir "$DATA/agent"
}
encode_all() {
    # all the data; the driving alone (where the dreams start); two halves of all (50 agent + 100 random episodes
    # each) for the ensemble's other members
    local h f
    run env OMP_NUM_THREADS=2 "$D" encode --data-dir "$DATA/agent" --extra-data-dirs "$DATA/random" \
        --vision "$R/vision.safetensors" --out "$R/latents.npz"
    run env OMP_NUM_THREADS=2 "$D" encode --data-dir "$DATA/agent" --vision "$R/vision.safetensors" \
        --out "$R/latents_agent.npz"
    for h in 1 2; do
        run mkdir -p "$DATA/half$h"
        if [ -z "${DRY_RUN:-}" ]; then
            rm -f "$DATA/half$h"/ep_*.npz
            for f in $(ls "$DATA"/agent/ep_*.npz | sed -n "$((50 * h - 49)),$((50 * h))p") \
                $(ls "$DATA"/random/ep_*.npz | sed -n "$((100 * h - 99)),$((100 * h))p"); do
                ln -s "$PWD/$f" "$DATA/half$h/"
            done
        fi
        run env OMP_NUM_THREADS=2 "$D" encode --data-dir "$DATA/half$h" --vision "$R/vision.safetensors" \
            --out "$R/latents_half$h.npz"
    done
}
train_memory() {
    # M goes on from the first one on all the data (windows 75% driving, 25% random); two copies of it go on
    # for 10 epochs each on one half: three Ms that err differently, for the ensemble
    run env OMP_NUM_THREADS=2 "$D" train-memory --latents "$R/latents.npz" --out "$R/memory.safetensors" \
        --init-from "$R/memory0.safetensors" --epochs 10 --lr-min 1e-4 --mix controller:0.75,random:0.25 --seed 1
    local h
    for h in 1 2; do
        run env OMP_NUM_THREADS=2 "$D" train-memory --latents "$R/latents_half$h.npz" \
            --out "$R/memory_half$h.safetensors" --init-from "$R/memory.safetensors" --epochs 10 --lr-min 1e-4 \
            --mix controller:0.75,random:0.25 --seed $((1 + h))
    done
}
dream_controller() {  # dream_controller SEED
    run "$D" train-controller --vision "$R/vision.safetensors" --memory "$R/memory.safetensors" \
        --dream-ensemble "$R/memory_half1.safetensors" "$R/memory_half2.safetensors" --latents "$R/latents_agent.npz" \
        --out "$R/controller_dream$1.safetensors" --population 48 --rollouts 16 --generations 120 \
        --max-steps 200 --start-step-min 0 --start-step-max 900 --tau 1.0 --real-check-every 10 \
        --real-check-episodes 8 --recheck-top 3 --recheck-episodes 8 --threads 1 --workers 1 --seed "$1" \
        $(resume_if "$R/controller_dream$1.safetensors")
}
dream_controllers() {
    # C from zero in the ensemble's dreams only (every candidate: 16 dreams of 200 steps from the driving episodes'
    # real states, tau 1.0, each in one of the three Ms), two CMA-ES seeds side by side on one core each; each
    # run's best snapshots by their real checks (8 model-selection tracks every 10 generations) are rechecked on 8
    # more
    local s pids=()
    for s in 1 2; do
        if [ -n "${DRY_RUN:-}" ]; then dream_controller $s; continue; fi
        dream_controller $s >"$R/controller_dream$s.log" 2>&1 &
        pids+=($!)
    done
    for s in "${pids[@]}"; do wait "$s"; done  # fails the stage when either run failed
}
pick_dream_controller() {
    # the seed whose kept snapshot drove best on its 16 model-selection tracks (the same tracks for both)
    run "$PY" -c "
import json, shutil
from core.checkpoint import raw_metadata
meta = {s: json.loads(raw_metadata('$R/controller_dream%d.safetensors' % s)['dream_explorer']) for s in (1, 2)}
r = {s: m['metrics']['controller/real_return'] for s, m in meta.items()}
best = max(r, key=r.get)
print('dream controllers, mean return on 16 model-selection tracks:', r, '-> seed', best)
shutil.copyfile('$R/controller_dream%d.safetensors' % best, '$R/controller_dream.safetensors')"
}
fine_tune() {
    # real-env CMA-ES around it, small steps (it drives already); the CMA-ES mean checked on 8 tracks every 4
    # generations, the 3 best checks driven on 16 more at the end
    run "$D" train-controller --evaluator real --vision "$R/vision.safetensors" --memory "$R/memory.safetensors" \
        --latents "$R/latents.npz" --out "$R/controller.safetensors" \
        --init-controller "$R/controller_dream.safetensors" \
        --population 16 --rollouts 1 --generations 16 --sigma0 0.03 --early-stop-patience 60 --real-check-every 4 \
        --real-check-episodes 8 --check-candidate mean --recheck-top 3 --recheck-episodes 16 --workers 2 \
        --threads 1 --seed 18 $(resume_if "$R/controller.safetensors")
}

if [ "${1:-}" = report ]; then report; exit 0; fi
[ -z "${DRY_RUN:-}" ] && close_interrupted
stage collect_random collect_random
stage train_vision train_vision
stage encode_random encode_random
stage train_memory0 train_memory0
stage controller0 controller0
stage collect_agent collect_agent
stage encode_all encode_all
stage train_memory train_memory
stage dream_controllers dream_controllers
stage pick_dream_controller pick_dream_controller
stage fine_tune fine_tune
report
