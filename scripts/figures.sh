#!/usr/bin/env bash
# Re-run the quick figures of README.md and assets/README.md on the shipped files in assets/ and print each
# beside the figure the docs state (`make figures`; about 17 min on 2 cores shared with a training job, 13 when the
# episodes are present). It collects the two 5-episode random-policy sets it scores (a collection skips episodes
# already present) and writes only under data/ and runs/figures/. It never touches the final track range
# (7,000,000+): final figures are run once per shipped model, by their recipe. `bash scripts/figures.sh --long` also runs the long ones listed at the end.
set -euo pipefail
D=${D:-.venv/bin/dream-explorer}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OUT=runs/figures
mkdir -p $OUT

figure() {  # figure "what" "stated figure (where)" command...
    printf '\n== %s\n   stated:   %s\n   command:  %s\n   measured:\n' "$1" "$2" "${*:3}"
    "${@:3}"
}

$D collect --episodes 5 --seed 980000 --out-dir data/fresh_980000 --workers 2
$D collect --episodes 5 --seed 500000 --out-dir data/heldout --workers 2

figure "parameters of the shipped files" \
    "ConvVAE V 4,348,547, M 384,071, C 867; DDS+VAE V 4,039,521, M 384,071, C 867 (card, file table)" \
    $PY -c "from core.assets import parameter_counts; print(parameter_counts())"

figure "ConvVAE vs DDS+VAE on 500 fresh frames, tracks 980,000..980,004 (issue 17), one 64x64 reference" \
    "mse_64 ConvVAE 0.00105 / DDS+VAE 0.00101; median 0.00081 / 0.00081; p95 0.00261 / 0.00275; per episode ConvVAE 0.00102 / 0.00071 / 0.00117 / 0.00106 / 0.00131, DDS+VAE 0.00102 / 0.00050 / 0.00114 / 0.00114 / 0.00126; DDS+VAE at 96x96 (mse_own) 0.00112 (card; session 22's V)" \
    $D compare-vision --data-dir data/fresh_980000 --frames 500 --grid $OUT/compare_vision_980000.png

figure "ConvVAE vs DDS+VAE on 500 frames of tracks 500,000..500,004 (they informed decisions)" \
    "mse_64 ConvVAE 0.00106 / DDS+VAE 0.00128; median 0.00082 / 0.00088; p95 0.00234 / 0.00396; per episode ConvVAE 0.00072 / 0.00080 / 0.00106 / 0.00148 / 0.00122, DDS+VAE 0.00063 / 0.00077 / 0.00101 / 0.00160 / 0.00239; DDS+VAE at 96x96 (mse_own) 0.00140 (README Figures, card; session 22's V)" \
    $D compare-vision --data-dir data/heldout --frames 500 --grid $OUT/compare_vision_500000.png

figure "shipped ConvVAE agent (session 18's controller), 10 development tracks 1,700,000..1,700,009" \
    "855.23 +- 166.99, min 356.0, max 925.0: the first 10 tracks of the card's 100-track run on these weights (855.9 +- 112.5 on 1,700,000..099)" \
    $D evaluate --vision assets/convvae_vision.safetensors --memory assets/convvae_memory.safetensors \
        --controller assets/convvae_controller.safetensors --episodes 10 --seed 1700000 --results $OUT/convvae_1700000x10.json

figure "shipped DDS+VAE agent (session 35's controller), 10 development tracks 1,920,000..1,920,009" \
    "882.75 +- 33.01, min 808.8, max 914.1: the first 10 tracks of the card's 50-track run on these weights (870.3 +- 69.7 on 1,920,000..049)" \
    $D evaluate --vision assets/ddsvae_vision.safetensors --memory assets/ddsvae_memory.safetensors \
        --controller assets/ddsvae_controller.safetensors --episodes 10 --seed 1920000 --results $OUT/ddsvae_1920000x10.json

figure "DDS+VAE dream vs reality (session 22's V, session 25's M), 5 episodes of tracks 500,000..500,004 (pixel MSE at 96x96 after 1 / 10 / 30 / 100 steps)" \
    "pixel dream 0.00268 / 0.01261 / 0.01851 / 0.01936; pixel copy (standing still) 0.00208 / 0.01395 / 0.02457 / 0.02222; pixel V 0.00134; reward dream -6.87 vs real -8.58 at 100; off-manifold 0.01% (card; session 24's M: 0.00261 / 0.01287 / 0.01848 / 0.01865, reward -7.54, off-manifold 1.08%)" \
    $D divergence --data-dir data/heldout --vision assets/ddsvae_vision.safetensors --memory assets/ddsvae_memory.safetensors --no-parked --no-steer

cat <<'EOF'

== Long figures, not run by default (`bash scripts/figures.sh --long` runs them; each needs what its line says)
- DDS+VAE agent (session 35's controller), 50 development tracks 1,920,000..049 (stated 870.3 +- 69.7, card; about 9 min):
  dream-explorer evaluate --vision assets/ddsvae_vision.safetensors --memory assets/ddsvae_memory.safetensors --controller assets/ddsvae_controller.safetensors --episodes 50 --seed 1920000
- ConvVAE agent (session 18's controller), 100 development tracks 1,700,000..099 (stated 855.9 +- 112.5, card; about 15 min):
  dream-explorer evaluate --vision assets/convvae_vision.safetensors --memory assets/convvae_memory.safetensors --controller assets/convvae_controller.safetensors --episodes 100 --seed 1700000
- Dream fidelity of the ConvVAE world model (session 13) on model-selection agent and random-policy episodes
  (data/check_agent10 and data/check_random10 from scripts/build_assets.sh section 7; about 10 min each):
  dream-explorer divergence --data-dir data/check_agent10 --vision assets/convvae_vision.safetensors --memory assets/convvae_memory.safetensors --horizons 10 30 100 200 --start-every 100
  (stated: tracked 98% / 96% / 63% / 39%, steering response dream -11.55 vs real -22.51; with --data-dir data/check_random10 --no-parked --no-steer 80% / 45% / 39% / 42%; card)
- The grounded dream (session 37) open loop on model-selection random-policy episodes, the DDS+VAE's files (about 13
  min on one core; data/check_random10 from scripts/build_assets.sh section 7):
  dream-explorer divergence --data-dir data/check_random10 --vision assets/ddsvae_vision.safetensors --memory assets/ddsvae_memory.safetensors --horizons 10 30 100 200 --start-every 100 --no-parked --no-steer --max-episodes 5 --tau 0.5 --dream-map --map-pose car --map-history 300
  (stated: tracked 95% / 82% / 82% / 78%; pixel MSE 0.22 / 0.32 of standing still's at 30 / 100 steps; card)
- The explorer's frame rate, both world models, every mode, with and without the pipelined step (docs/history.md "The next
  step beside the swap"; stated e.g. DDS+VAE split 32.1 -> 36.9 FPS; needs a quiet machine and xvfb-run; about 9 min):
  .venv/bin/python scripts/bench_explorer.py --frames 300 --repeats 2 --variants no-pipeline pipeline
- Final-range figures (7,000,000+): never re-run; they are run once per shipped model by its recipe
  (scripts/build_assets.sh sections 5, 6, 10, 15, 16, 19, 21, 22 and 32) and their per-track results sit in assets/results/.
EOF

if [ "${1:-}" = "--long" ]; then
    figure "DDS+VAE agent (session 35's controller), 50 development tracks 1,920,000..1,920,049" "870.3 +- 69.7 (card)" \
        $D evaluate --vision assets/ddsvae_vision.safetensors --memory assets/ddsvae_memory.safetensors \
            --controller assets/ddsvae_controller.safetensors --episodes 50 --seed 1920000 --results $OUT/ddsvae_1920000x50.json
    figure "ConvVAE agent (session 18's controller), 100 development tracks 1,700,000..1,700,099" "855.9 +- 112.5 (card)" \
        $D evaluate --vision assets/convvae_vision.safetensors --memory assets/convvae_memory.safetensors \
            --controller assets/convvae_controller.safetensors --episodes 100 --seed 1700000 --results $OUT/convvae_1700000x100.json
fi
