"""Stage configs: frozen dataclasses with a docstring per field. The CLI (tyro) and the GUI edit these objects.

Invalid values raise :class:`core.errors.ConfigError` at construction, with a one-line message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Literal, get_args

from core.data.seeds import MODEL_SELECTION
from core.errors import ConfigError
from core.memory_budget import check_fits_in_memory, memory_train_bytes
from core.models.speed import SpeedModel

VisionKind = Literal["conv_vae", "dds_vae"]
EvalGates = Literal["deterministic", "frozen-noise"]
CollectPolicy = Literal["random", "controller"]
VisionBackend = Literal["onnxruntime", "pytorch"]


def check(condition: bool, message: str) -> None:
    """The one way a stage config checks a value in ``__post_init__``.

    Raises:
        ConfigError: ``message`` (one line naming the field, its range and the value given) unless ``condition``.
    """
    if not condition:
        raise ConfigError(message)


def check_finite(config: object) -> None:
    """Reject a config whose float fields hold NaN or an infinity (no stage field has a use for either).

    Call it first in a config's ``__post_init__``: range checks such as ``x >= 0`` let ``inf`` through.

    Raises:
        ConfigError: names the first such field and its value.
    """
    if not is_dataclass(config):
        raise TypeError(f"check_finite needs a dataclass, got {type(config).__name__}")
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name.replace('_', '-')} must be a finite number, got {value}")


SHIPPED_Z_DIM, SHIPPED_HIDDEN_DIM = 32, 256
"""Latent and LSTM sizes of the shipped world models, which memory estimates made before a model is loaded assume."""


@dataclass(frozen=True)
class CollectConfig:
    """Record real CarRacing-v3 episodes."""

    out_dir: Path = Path("data/episodes")
    """Directory of episode files (created if missing; existing episodes are kept and skipped)."""
    episodes: int = 100
    """Number of episodes (track seeds seed .. seed + episodes - 1)."""
    seed: int = 0
    """First track seed; use a new range to append more episodes."""
    max_steps: int = 1000
    """Steps per episode at most (CarRacing's own limit is 1000)."""
    workers: int = 2
    """Worker processes stepping envs in parallel (one per core is fastest)."""
    executor: Literal["local", "ray"] = "local"
    """Where episodes run: "local" worker processes or a "ray" cluster."""
    ray_address: str | None = None
    """Ray cluster to join with --executor ray ("auto", "host:6379", "ray://host:10001"; default: start a
    local Ray instance)."""
    policy: CollectPolicy = "random"
    """What drives: "random" (held random actions, mostly off the road within seconds) or "controller" (a trained
    controller with --noise-std and --excursion-prob exploration: long on-road stretches, excursions onto the
    grass and the recoveries; needs --vision, --memory and --controller). Each episode records it."""
    vision: Path | None = None
    """--policy controller: the controller's vision checkpoint."""
    memory: Path | None = None
    """--policy controller: the controller's MDN-RNN checkpoint (unused by a V-only controller)."""
    controller: Path | None = None
    """--policy controller: the controller checkpoint."""
    noise_std: float = 0.1
    """--policy controller: standard deviation of the Gaussian noise added to the steering."""
    excursion_prob: float = 0.005
    """--policy controller: per-step probability of a random excursion of 5-30 steps off the controller's line."""
    noise_corr_steps: float = 0.0
    """--policy controller: correlation time of the steering noise in env steps (an AR(1), Ornstein-Uhlenbeck
    process with std --noise-std; 0 = white noise). Correlated pushes move the car off the controller's line, so
    the data show what steering does apart from where the road goes."""
    gas_hold_prob: float = 0.0
    """--policy controller: per-step probability of holding the gas at a random value U(0, 1) for 20-80 steps while
    the controller steers, so the data show what gas does on the road (see core.policies_wm.ControllerPolicy)."""
    stop_prob: float = 0.0
    """--policy controller: per-step probability of a stop: full brake until the car stands, then no input for
    20-100 steps; with it > 0 half the episodes also begin parked (see core.policies_wm.ControllerPolicy)."""
    pedal_pulse_prob: float = 0.0
    """--policy controller: per-step probability of 20-60 steps of pedal pulses: gas U(0, 1) and, half the time,
    brake U(0.1, 1), drawn afresh every step while the controller steers, so the data show what part brakes do at
    speed (see core.policies_wm.ControllerPolicy)."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        check(self.policy in get_args(CollectPolicy), f"policy must be random or controller, got {self.policy!r}")
        check(
            self.policy != "controller" or (self.vision is not None and self.controller is not None),
            "--policy controller needs --vision and --controller (and --memory for a full controller)",
        )
        check(self.noise_std >= 0, f"noise_std must be >= 0, got {self.noise_std}")  # NaN fails too
        check(0.0 <= self.excursion_prob <= 1.0, f"excursion_prob must be in [0, 1], got {self.excursion_prob}")
        check(self.noise_corr_steps >= 0, f"noise_corr_steps must be >= 0, got {self.noise_corr_steps}")
        check(0.0 <= self.gas_hold_prob <= 1.0, f"gas_hold_prob must be in [0, 1], got {self.gas_hold_prob}")
        check(0.0 <= self.stop_prob <= 1.0, f"stop_prob must be in [0, 1], got {self.stop_prob}")
        check(0.0 <= self.pedal_pulse_prob <= 1.0, f"pedal_pulse_prob must be in [0, 1], got {self.pedal_pulse_prob}")
        check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        check(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(
            self.seed + self.episodes <= MODEL_SELECTION.stop,
            f"collection seeds must stay below {MODEL_SELECTION.stop:,} (training and model-selection tracks; "
            f"evaluation tracks are held out), got {self.seed}.."
            f"{self.seed + self.episodes - 1}",
        )
        check(self.executor in ("local", "ray"), f"executor must be local or ray, got {self.executor!r}")


@dataclass(frozen=True)
class VisionTrainConfig:
    """Train the vision model (V) on episode frames."""

    data_dir: Path = Path("data/episodes")
    """Directory of episode files."""
    out: Path = Path("runs/vision.safetensors")
    """Checkpoint to write (the resume state goes next to it as .resume.pt)."""
    model: VisionKind = "conv_vae"
    """Vision model: Ha's ConvVAE (64x64) or the DDS+VAE (96x96)."""
    phase: int = 1
    """DDS+VAE only: 1 trains the DDS, U-Nets and scaling nets; 2 trains the mini-VAE (needs a phase-1 --out)."""
    epochs: int = 10
    """Passes over the training frames."""
    batch_size: int = 128
    """Frames per optimiser step."""
    lr: float | None = None
    """Peak learning rate, cosine-annealed to a tenth (None: the recipe's: ConvVAE 1e-3 Adam; DDS+VAE phase 1
    1e-2 and phase 2 1e-3 AdamW, as the seed work)."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation (split by episode)."""
    frame_stride: int = 1
    """Use every n-th frame of each episode (1 = all)."""
    max_episodes: int = 0
    """Use at most this many episodes (0 = all)."""
    bf16: bool = True
    """bfloat16 autocast + channels_last on the CPU where this CPU runs it faster than float32 (measured at the start:
    core.precision; where bfloat16 is emulated it is many times slower); --no-bf16: float32 always."""
    seed: int = 0
    """Seed of the split, init and batch order."""
    resume: bool = False
    """Continue from the checkpoint at --out and its resume state."""
    epoch_frames: int = 0
    """Frames per epoch, drawn at random from the training frames (0 = all). Short epochs on a long run give
    frequent validation and checkpoints, so an abrupt stop loses little."""
    anneal_gate_alpha_to: float | None = None
    """DDS+VAE phase 1: anneal the gate noise scale alpha linearly from the model's (the seed: 1.0) to this
    value over the run, so the noisy training masks approach the deterministic top-k masks of evaluation (at
    alpha = 1 the logistic noise can outweigh the learnt scores; README, DDS+VAE section)."""
    kl_weight: float | None = None
    """DDS+VAE phase 2: weight of the free-bits KL term (None: the model's own, 1.0 as in the seed work). A
    weight of 1.0 against the small internal perceptual loss can collapse the mini-VAE's posterior to the
    free-bits floor, so z carries nothing (docs/deviations.md)."""
    eval_gates: EvalGates | None = "frozen-noise"
    """DDS+VAE: how the trained model's DDS gates in evaluation, stored in its checkpoint (None: keep the
    model's own; a new model's is "deterministic", the seed work's noise-free top-k). "frozen-noise" uses one
    fixed draw of the training noise for every frame, because the deterministic top-k masks are unlike any the
    decoder saw in training (core.models.dds_vae.DDS; measured effect: docs/deviations.md). Phase 2 computes its
    target mini masks with it."""
    temporal_weight: float | None = None
    """DDS+VAE phase 2, not in the seed work: weight of a slowness term on the mini-VAE's mu between frames
    ``frame_stride`` steps apart in one episode (core.models.vae.slowness; None: the model's own, 0 for a new
    one). Each batch is then half frames and half the frames that follow them."""
    init_from: Path | None = None
    """Start from the weights of this checkpoint of the same model kind, with a fresh optimiser and schedule:
    fine-tuning or a warm restart. DDS+VAE phase 2 from a phase-1 checkpoint trains a fresh mini-VAE, from a
    phase-2 one fine-tunes its mini-VAE."""
    mask_input: bool = False
    """DDS+VAE phase 1 from scratch: the downscaling encoder also sees the gates ``mask * g``, so a kept black
    value differs from a dropped one (not in the seed work; see core.models.dds_vae.DDSVAEConfig.mask_input).
    Warm starts and phase 2 keep their checkpoint's choice."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(self.model in ("conv_vae", "dds_vae"), f"model must be conv_vae or dds_vae, got {self.model!r}")
        check(self.phase in (1, 2), f"phase must be 1 or 2, got {self.phase}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check(self.frame_stride >= 1, f"frame_stride must be >= 1, got {self.frame_stride}")
        check(self.max_episodes >= 0, f"max_episodes must be >= 0, got {self.max_episodes}")
        check(
            self.anneal_gate_alpha_to is None or self.anneal_gate_alpha_to >= 0,
            f"anneal_gate_alpha_to must be >= 0, got {self.anneal_gate_alpha_to}",
        )
        check(self.kl_weight is None or self.kl_weight >= 0, f"kl_weight must be >= 0, got {self.kl_weight}")
        check(
            self.temporal_weight is None or self.temporal_weight >= 0,
            f"temporal_weight must be >= 0, got {self.temporal_weight}",
        )
        check(
            not self.temporal_weight or (self.model == "dds_vae" and self.phase == 2),
            "temporal_weight applies to a DDS+VAE in phase 2",
        )
        check(
            self.eval_gates is None or self.eval_gates in get_args(EvalGates),
            f"eval_gates must be deterministic or frozen-noise, got {self.eval_gates!r}",
        )
        check(self.epoch_frames >= 0, f"epoch_frames must be >= 0, got {self.epoch_frames}")
        check(not (self.resume and self.init_from is not None), "use either --resume or --init-from, not both")
        check(
            not self.mask_input or (self.model == "dds_vae" and self.phase == 1 and self.init_from is None),
            "mask_input applies to a DDS+VAE phase 1 started from scratch (a checkpoint keeps its own choice)",
        )


@dataclass(frozen=True)
class EncodeConfig:
    """Encode every frame of every episode to (mu, logvar) with a trained vision model."""

    data_dir: Path = Path("data/episodes")
    """Directory of episode files."""
    extra_data_dirs: tuple[Path, ...] = ()
    """More directories of episode files, encoded after --data-dir into the same latent file (e.g. random and
    controller-driven episodes; each episode keeps its policy label, and train-memory --mix sets the shares)."""
    vision: Path = Path("runs/vision.safetensors")
    """Vision checkpoint (ConvVAE or DDS+VAE)."""
    out: Path = Path("runs/latents.npz")
    """Latent file to write."""
    batch_size: int = 256
    """Frames per forward pass."""
    max_episodes: int = 0
    """Encode at most this many episodes, in file order (0 = all)."""
    runtime: VisionBackend = "onnxruntime"
    """What runs V: ONNX Runtime (the graph exported once and checked against PyTorch, see core.vision_runtime;
    batches of at most 64 frames; PyTorch where it cannot run) or PyTorch."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.max_episodes >= 0, f"max_episodes must be >= 0, got {self.max_episodes}")
        check(self.runtime in get_args(VisionBackend), f"runtime must be onnxruntime or pytorch, got {self.runtime}")


@dataclass(frozen=True)
class MemoryTrainConfig:
    """Train the MDN-RNN (M) on encoded episodes."""

    latents: Path = Path("runs/latents.npz")
    """Latent file written by `encode`."""
    out: Path = Path("runs/memory.safetensors")
    """Checkpoint to write."""
    epochs: int = 20
    """Passes over the training sequences."""
    seq_len: int = 100
    """Steps per training sequence (windows cut at random offsets)."""
    batch_size: int = 32
    """Sequences per optimiser step."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_min: float | None = None
    """Anneal the learning rate from --lr to this value over the run on a cosine (Loshchilov & Hutter, 2017),
    per optimiser step (None: constant --lr, the recipe of the shipped M)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value."""
    hidden_dim: int = 256
    """LSTM size."""
    n_gaussians: int = 5
    """Mixture components (per latent dimension, or of the whole vector with --joint)."""
    joint: bool = False
    """One mixture over the whole latent vector (K diagonal Gaussians sharing one set of weights) instead of Ha's
    independent mixture per dimension, so a dream draws one coherent future for all of z (see
    MDNRNNConfig.joint)."""
    speed_weight: float = 0.0
    """> 0: M also predicts the car's speed from h (read from the HUD; the latent file must have speeds, written by
    encode) with this weight on its MSE, so the LSTM carries the speed and the pedal's effect on it (see
    MDNRNNConfig.speed_weight). 0: no speed head. With --init-from the source M's heads are kept."""
    speed_input: bool = False
    """The LSTM also reads the car's speed (the HUD's in reality, its own running sum in the dream) and the speed head
    predicts its change (see MDNRNNConfig.speed_input); needs --speed-weight > 0."""
    speed_model: SpeedModel = "lstm"
    """What the speed head reads with --speed-input: "lstm" (h_{t+1}) or "markov" (a_t, s_t and two read-outs of z_t,
    through an MLP: a first-order model of the car's dynamics; see MDNRNNConfig.speed_model)."""
    yaw_input: bool = False
    """The car's yaw rate (the HUD's gyroscope bar) joins the speed as an LSTM input and a state the Markov model
    steps (see MDNRNNConfig.yaw_input); needs --speed-model markov and yaw rates in the latent file."""
    speed_rollout_weight: float = 0.0
    """> 0 (with --speed-model markov): also step the speed model alone along each window's real z and actions from
    its first real speed and add this weight times the MSE of the stepped speeds (MDNRNN.speed_rollout_mse), so a
    small bias per step cannot sum to a slow dream car over hundreds of steps."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation."""
    dream_check_steps: int = 100
    """After every epoch, dream this many steps open loop from real states of the held-out episodes and log the
    dreamed z's error against the real one beside standing still's (memory/val/dream_mse, dream_mse_copy; see
    core.train.memory.dream_latent_error); 0: off. Teacher-forced validation does not show how far a dream drifts."""
    sample_z: bool = True
    """Train on z ~ N(mu, exp(logvar)) drawn afresh each batch (Ha's recipe) instead of on mu. Training on mu
    predicts one step ahead better, but its dreams leave the data manifold; an M trained on samples keeps
    dreaming plausible road and grass, and the dream is what M is for (figures: README)."""
    target_mu: bool = False
    """With --sample-z: fit the encoder's mu_{t+1} as the target while the inputs stay sampled (a denoising
    target: the mixture models the dynamics, not the encoder's posterior noise)."""
    clean_input_fraction: float = 0.2
    """With --sample-z: this share of the training sequences takes the encoder's mu as inputs (targets stay
    sampled), so M sees both the clean latents the real env feeds it and the noisy ones it feeds itself in
    the dream. Larger shares predict one step ahead better but drift off the data in a dream (figures: README)."""
    residual: bool = True
    """Predict component means as offsets from z_t (see MDNRNNConfig.residual)."""
    head_prior: bool = True
    """Start the reward and done heads' biases at the training data's mean reward and terminal log-odds
    (see MDNRNN.init_head_priors). Without it the done bias stays near its random init (~0) and an LSTM state
    with little context (a dream's first step) reads as P(done) ~ 0.5, so dreams from a reset frame end at once
    (figures: README). The shipped ConvVAE M predates this option (--no-head-prior rebuilds it)."""
    open_loop_steps: int = 0
    """Also train on dreams: in each window M reads the real z up to a random step, then feeds itself its own
    samples for this many steps and is scored on the real z, reward and done (see core.models.open_loop.open_loop_loss).
    0: teacher forcing only (Ha's recipe). Must be < --seq-len."""
    open_loop_weight: float = 1.0
    """Weight of the open-loop loss beside the teacher-forced one."""
    open_loop_policies: str = ""
    """Score dreams only in windows of these driving policies (comma-separated, e.g. "random"; empty: all).
    A driver steers along the road, so in its episodes an action also says where the road goes; scored over many
    steps, M then learns that steering right makes the road turn right. A random policy's actions say nothing
    about the road, so its windows teach only what an action does."""
    init_from: Path | None = None
    """Start from this MDN-RNN checkpoint's weights (fine-tuning; a fresh optimiser) instead of a random init."""
    mix: str = ""
    """Share of training windows per driving policy, as policy:weight pairs, e.g. "controller:0.7,random:0.3"
    (weights are normalised; every policy in the latent file needs one). Empty: every episode equally likely."""
    seed: int = 0
    """Seed of the split, init, z sampling and batch order."""
    resume: bool = False
    """Continue from the checkpoint at --out and its resume state."""

    def __post_init__(self) -> None:
        check_finite(self)
        from core.data.datasets import parse_mix

        parse_mix(self.mix)
        n = self.open_loop_steps
        check(0 <= n < self.seq_len, f"--open-loop-steps must be in [0, --seq-len), got {n}")
        check(self.open_loop_weight >= 0, f"--open-loop-weight must be >= 0, got {self.open_loop_weight}")
        w, why = self.speed_rollout_weight, "must be >= 0, and > 0 only with --speed-model markov"
        check(w == 0 or (w > 0 and self.speed_model == "markov"), f"--speed-rollout-weight {why}, got {w}")
        check(not (self.resume and self.init_from is not None), "use either --resume or --init-from, not both")
        check(
            not self.open_loop_policies or all(p.strip() for p in self.open_loop_policies.split(",")),
            f"--open-loop-policies must be comma-separated policy names, got {self.open_loop_policies!r}",
        )
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.speed_model in get_args(SpeedModel), f"--speed-model must be lstm or markov: {self.speed_model!r}")
        check(
            self.speed_model == "lstm" or self.speed_input,
            "--speed-model markov steps the speed from the frame, the action and the speed: it needs --speed-input",
        )
        check(not self.yaw_input or self.speed_model == "markov", "--yaw-input needs --speed-model markov")
        check(self.seq_len >= 2, f"seq_len must be >= 2, got {self.seq_len}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.lr_min is None or 0 <= self.lr_min <= self.lr, f"lr_min must be in [0, lr], got {self.lr_min}")
        check(self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        check(1 <= self.hidden_dim <= 4096, f"hidden_dim must be in 1..4096, got {self.hidden_dim}")
        check(1 <= self.n_gaussians <= 64, f"n_gaussians must be in 1..64, got {self.n_gaussians}")
        check_fits_in_memory(
            f"seq_len {self.seq_len} x batch_size {self.batch_size} (the activations backpropagation keeps, "
            f"~{memory_train_bytes(1, 1, self.hidden_dim, self.n_gaussians, SHIPPED_Z_DIM) / 1024:.0f} KiB per "
            f"sequence step with hidden_dim {self.hidden_dim})",
            memory_train_bytes(self.seq_len, self.batch_size, self.hidden_dim, self.n_gaussians, SHIPPED_Z_DIM),
        )
        check(
            0 <= self.clean_input_fraction <= 1,
            f"clean_input_fraction must be in [0, 1], got {self.clean_input_fraction}",
        )
        check(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check(self.dream_check_steps >= 0, f"dream_check_steps must be >= 0, got {self.dream_check_steps}")


@dataclass(frozen=True)
class DreamVideoConfig:
    """Dream from a real frame and write the decoded dream to an MP4."""

    vision: Path = Path("runs/vision.safetensors")
    """Vision checkpoint."""
    memory: Path = Path("runs/memory.safetensors")
    """MDN-RNN checkpoint."""
    controller: Path | None = None
    """Controller checkpoint that drives the dream (default: random exploration actions)."""
    out: Path = Path("runs/dream.mp4")
    """Video file to write."""
    steps: int = 300
    """Dream steps."""
    tau: float = 1.0
    """MDN temperature (0 = deterministic)."""
    seed: int = 0
    """Track seed of the real starting frame, and dream RNG seed."""
    warmup: int = 50
    """Real steps driven before the dream starts (skips CarRacing's zoom-in)."""
    fps: int = 50
    """Frames per second of the video."""
    side_by_side: bool = True
    """Show reality (same actions) next to the dream."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.tau >= 0, f"tau must be >= 0, got {self.tau}")
        check(self.fps >= 1, f"fps must be >= 1, got {self.fps}")
        check(self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}")
