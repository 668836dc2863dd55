#!/usr/bin/env bash
# One World Models agent for CarRacing built from nothing on this machine, with its wall time: random-policy
# rollouts -> Ha's ConvVAE -> an MDN-RNN -> a linear controller on [z, h] trained by real-env CMA-ES from zero
# weights, as Ha & Schmidhuber trained theirs for CarRacing -> a real-env CMA-ES fine-tune of that controller that
# scores every candidate on 4 whole episodes instead of 1 cut one. No shipped file and no earlier run is read.
#
#   bash scripts/from_nothing.sh            # run (or resume) the build into $R (default runs/from_nothing)
#   bash scripts/from_nothing.sh report     # the wall time of every stage so far, and the total
#   DRY_RUN=1 bash scripts/from_nothing.sh  # print the commands only
#
# Resumable: a finished stage is skipped; an interrupted one starts again (collection keeps the episodes it has,
# training goes on from its .resume.pt). The wall time of every attempt goes to $R/timing.tsv, an interrupted one's
# up to its last heartbeat (every $HEARTBEAT s, default 20), so the total counts the time lost to interruptions as
# well.
# The agent is then scored once on a fresh final block (not part of the build's time):
#   dream-explorer evaluate --vision $R/vision.safetensors --memory $R/memory.safetensors \
#       --controller $R/controller_ft.safetensors --episodes 100 --seed <fresh final block>
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-.venv/bin/dream-explorer}
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
        rm -f "$f" "$R/.attempt.$name.beat" "$R/.attempt.$name.beat.tmp"
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
    local t0
    t0=$(date +%s)
    echo "$t0" >"$R/.attempt.$name.start"
    # the heartbeat ends with the script however it ends: at its exit (a failed stage too), or within one beat
    # when it is killed outright
    local beat=$R/.attempt.$name.beat  # written whole (a rename), so a beat killed mid-write leaves the last one
    # told to stop (TERM), the loop first finishes a write under way (bash runs the trap once its foreground command
    # is done; the sleep is waited for in the background, so the trap cuts it short): after `wait` no beat is written
    (
        nap=
        trap 'kill "$nap" 2>/dev/null; exit 0' TERM
        while kill -0 $$ 2>/dev/null; do
            date +%s >"$beat.tmp" && mv "$beat.tmp" "$beat"
            sleep "${HEARTBEAT:-20}" &
            nap=$!
            wait "$nap"
        done
    ) >/dev/null 2>&1 &
    beat_pid=$!  # global: the EXIT trap reads it outside this function
    trap 'kill "$beat_pid" 2>/dev/null || true' EXIT
    "$fn"
    kill "$beat_pid" 2>/dev/null || true
    wait "$beat_pid" 2>/dev/null || true
    trap - EXIT
    printf '%s\t%d\tdone\t%s\n' "$name" $(($(date +%s) - t0)) "$(date -u +%FT%TZ)" >>"$R/timing.tsv"
    rm -f "$R/.attempt.$name.start" "$beat" "$beat.tmp"
}

report() {
    close_interrupted
    if [ ! -e "$R/timing.tsv" ]; then echo "no stage has run yet ($R/timing.tsv)"; return; fi
    awk -F'\t' '{ s += $2; printf "%-22s %7.1f min  %s\n", $1, $2 / 60, $3 }
        END { printf "%-22s %7.1f min\n", "total", s / 60 }' "$R/timing.tsv"
}

# The track seeds of the rollouts: training range (below 900,000), fresh for this recipe.
RANDOM_SEED=810000   # 200 random-policy episodes

collect() { run "$D" collect --episodes 200 --seed $RANDOM_SEED --workers 2 --out-dir "$DATA/random"; }
vision() {
    # Ha's ConvVAE, 2 epochs over every 2nd frame (bfloat16 autocast where the CPU has it)
    run env OMP_NUM_THREADS=2 "$D" train-vision --model conv_vae --data-dir "$DATA/random" \
        --out "$R/vision.safetensors" --epochs 2 --frame-stride 2 --seed 0 $(resume_if "$R/vision.safetensors")
}
encode() {
    run env OMP_NUM_THREADS=2 "$D" encode --data-dir "$DATA/random" --vision "$R/vision.safetensors" \
        --out "$R/latents.npz"
}
memory() {
    run env OMP_NUM_THREADS=2 "$D" train-memory --latents "$R/latents.npz" --out "$R/memory.safetensors" \
        --epochs 20 --seed 0 $(resume_if "$R/memory.safetensors")
}
controller() {
    # real-env CMA-ES from zero weights: 16 candidates x 1 episode each, cut after 50 steps without reward; the
    # CMA-ES mean checked on 4 model-selection tracks every 5 generations; at the end the 3 best checks drive 16
    # more tracks each and the best of them on all its 20 is kept
    run "$D" train-controller --evaluator real --vision "$R/vision.safetensors" --memory "$R/memory.safetensors" \
        --latents "$R/latents.npz" --out "$R/controller.safetensors" --population 16 --rollouts 1 \
        --generations 80 --sigma0 0.1 --early-stop-patience 50 --real-check-every 5 --real-check-episodes 4 \
        --check-candidate mean --recheck-top 3 --recheck-episodes 16 --workers 2 --threads 1 --seed 0 \
        $(resume_if "$R/controller.safetensors")
}
finetune() {
    # real-env CMA-ES again, from the controller above: every candidate drives the generation's 4 tracks (one track
    # per candidate left the ranking to the luck of the track), with a smaller step; the start is checked first on
    # 8 model-selection tracks and kept unless a later check of the mean beats it; the 3 best checks then drive 16
    # more tracks each and the best of them on all its 24 is kept. No early stop here: a candidate that leaves the
    # road drives on to the episode's end, so finding the road again scores (the first CMA-ES's 50-step cut hides
    # every longer recovery, and the low tracks are lost off the road)
    run "$D" train-controller --evaluator real --vision "$R/vision.safetensors" --memory "$R/memory.safetensors" \
        --latents "$R/latents.npz" --out "$R/controller_ft.safetensors" --init-controller "$R/controller.safetensors" \
        --check-init --population 16 --rollouts 4 --generations 6 --sigma0 0.05 \
        --early-stop-patience 0 --real-check-every 2 --real-check-episodes 8 --check-candidate mean --recheck-top 3 \
        --recheck-episodes 16 --workers 2 --threads 1 --seed 1 $(resume_if "$R/controller_ft.safetensors")
}

if [ "${1:-}" = report ]; then report; exit 0; fi
[ -z "${DRY_RUN:-}" ] && close_interrupted
stage collect collect
stage vision vision
stage encode encode
stage memory memory
stage controller controller
stage finetune finetune
report
