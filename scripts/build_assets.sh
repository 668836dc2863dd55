#!/usr/bin/env bash
# Rebuild everything in assets/ from nothing on this machine: collect -> V -> encode -> M -> C -> evaluate,
# for the ConvVAE and the DDS+VAE, then export (ConvVAE V and M as fp16) + manifest. Seeds and settings are the shipped ones.
# Logs and intermediate files go to runs/ (not in git). Takes a few hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
D=.venv/bin/dream-explorer
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one torch thread per process: fastest when other work shares the cores
mkdir -p runs/convvae runs/ddsvae

# 1. data: 200 random-policy episodes on track seeds 0..199
$D collect --out-dir data/episodes --episodes 200 --seed 0 --workers 2

# 2. ConvVAE world model
# (the shipped V ran with --epochs 8 and was stopped after epoch 2 for time; --epochs 2 anneals fully)
$D train-vision --model conv-vae --data-dir data/episodes --out runs/convvae/vision.safetensors --epochs 2 --frame-stride 2 --seed 0
$D encode --data-dir data/episodes --vision runs/convvae/vision.safetensors --out runs/convvae/latents.npz
$D train-memory --latents runs/convvae/latents.npz --out runs/convvae/memory.safetensors --epochs 30 --clean-input-fraction 0 --no-head-prior --seed 0
# C: 10 generations in the dream, then 10 generations of real-env CMA-ES started from it
$D train-controller --vision runs/convvae/vision.safetensors --memory runs/convvae/memory.safetensors \
    --latents runs/convvae/latents.npz --out runs/convvae/controller_dream.safetensors --generations 10 --threads 1 --seed 0
$D train-controller --evaluator real --vision runs/convvae/vision.safetensors --memory runs/convvae/memory.safetensors \
    --latents runs/convvae/latents.npz --out runs/convvae/controller.safetensors \
    --init-controller runs/convvae/controller_dream.safetensors --population 16 --rollouts 1 --generations 10 \
    --early-stop-patience 60 --real-check-every 10 --real-check-episodes 4 --workers 2 --threads 1 --seed 1
$D evaluate --controller runs/convvae/controller.safetensors --episodes 100 --json | tee runs/convvae/evaluate.json

# the ConvVAE world model goes into assets/ now: section 3's controller starts by imitating it
.venv/bin/python scripts/export_assets.py runs/convvae conv_vae

# 3. DDS+VAE world model (session 6): V in two phases with the mask as an extra encoder input, its own M, and a
# controller distilled from the ConvVAE agent on 12 real tracks, then fine-tuned by real-env CMA-ES
R=runs/ddsvae
$D collect --out-dir data/heldout --episodes 5 --seed 500000 --workers 2
# phase 1: 600 steps of batch 128 (12 epochs of 6,400 frames from every 2nd frame), 47 min
OMP_NUM_THREADS=2 $D train-vision --model dds-vae --phase 1 --mask-input --data-dir data/episodes \
    --out $R/vision_phase1.safetensors --epochs 12 --epoch-frames 6400 --frame-stride 2 --lr 3e-3 --seed 0
# phase 2: the mini-VAE at KL weight 0.01 (the seed's 1.0 collapsed the posterior here), 420 steps, 19 min;
# evaluation gates "frozen-noise": one fixed draw of the training noise, so evaluation masks look like training ones
OMP_NUM_THREADS=2 $D train-vision --model dds-vae --phase 2 --init-from $R/vision_phase1.safetensors \
    --data-dir data/episodes --out $R/vision.safetensors --epochs 3 --epoch-frames 17920 --frame-stride 5 \
    --kl-weight 0.01 --eval-gates frozen-noise --seed 0
OMP_NUM_THREADS=2 $D encode --data-dir data/episodes --vision $R/vision.safetensors --out $R/latents.npz --max-episodes 60
OMP_NUM_THREADS=1 $D train-memory --latents $R/latents.npz --out $R/memory.safetensors --epochs 60 --seed 2
# C: behaviour cloning of the ConvVAE agent on tracks 700,000..700,011 (its frames re-encoded by this V and M),
# then 16 generations of real-env CMA-ES around it (small steps: it already drives)
$D distill-controller --teacher assets/convvae_controller.safetensors --vision $R/vision.safetensors \
    --memory $R/memory.safetensors --out $R/controller_distilled.safetensors --episodes-dir data/teacher \
    --episodes 12 --seed 700000 --workers 2
$D train-controller --evaluator real --vision $R/vision.safetensors --memory $R/memory.safetensors \
    --latents $R/latents.npz --out $R/controller.safetensors --init-controller $R/controller_distilled.safetensors \
    --population 16 --rollouts 1 --generations 16 --sigma0 0.03 --early-stop-patience 60 --real-check-every 4 \
    --real-check-episodes 4 --workers 2 --threads 1 --seed 5
$D evaluate --vision $R/vision.safetensors --memory $R/memory.safetensors --controller $R/controller.safetensors \
    --episodes 100 --workers 2 --json | tee $R/evaluate.json
$D compare-vision --data-dir data/heldout --frames 500 --conv-vae runs/convvae/vision.safetensors --dds-vae $R/vision.safetensors --grid docs/compare_vision.png
$D divergence --vision runs/convvae/vision.safetensors --memory runs/convvae/memory.safetensors
$D divergence --vision $R/vision.safetensors --memory $R/memory.safetensors

# 4. export the DDS+VAE world model (float32) and the manifest of hashes
.venv/bin/python scripts/export_assets.py $R dds_vae --fp32
