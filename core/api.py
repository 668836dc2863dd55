"""The public surface of the training package: what the explorer and the CLI call.

Every stage is a plain function ``stage(config, *, on_progress, should_stop) -> result``; configs are frozen
dataclasses; models load from self-describing checkpoints.
"""

from __future__ import annotations

from core.assets import ASSETS_DIR, AssetPaths, AssetWarning, default_paths, verify_assets, write_manifest
from core.checkpoint import load_model, read_checkpoint, save_checkpoint
from core.config import CollectConfig, DreamVideoConfig, EncodeConfig, MemoryTrainConfig, VisionTrainConfig
from core.data.collect import collect
from core.data.episodes import Episode, list_episodes, read_episode, write_episode
from core.data.policies import RandomExplorationPolicy, RandomPolicyFactory
from core.divergence import DivergenceConfig, dream_divergence
from core.envs.car_racing import (
    FRAME_SHAPE,
    HUD_ROWS,
    car_speed,
    car_yaw_rate,
    hud_speed,
    hud_yaw_rate,
    make_real_env,
    preprocess_frames,
    to_uint8_hwc,
)  # fmt: skip
from core.envs.dream import BatchedDream, DreamEnv
from core.envs.dream_car import DreamCars, TileReward, car_state, dream_with_car, visited_road
from core.envs.dream_map import DreamMap
from core.envs.world_model import RealTracker, WorldModel, WorldModelObservation, load_vision
from core.errors import CheckpointError, ConfigError, DreamExplorerError, EpisodeError, StageCancelled
from core.evaluate import EvaluateConfig, EvaluationResult, evaluate
from core.metrics.road import road_offset, road_share, tracks_road
from core.models.dds_vae import EVAL_GATES
from core.models.mdn import mixture_mean, sample_mdn
from core.parallel import TaskFailed, WorkerCrashed, make_executor
from core.policies_wm import ControllerPolicyFactory, WorldModelFiles
from core.progress import Progress, ProgressFn
from core.train.controller import ControllerTrainConfig, train_controller
from core.train.distill import DistillConfig, distill_controller
from core.train.encode import train_encode
from core.train.iterate import IterateConfig, iterate
from core.train.loop import StageResult
from core.train.memory import train_memory
from core.train.vision import train_vision
from core.video import record_dream, write_video

__all__ = [
    "ASSETS_DIR", "EVAL_GATES", "AssetPaths", "AssetWarning", "default_paths", "verify_assets", "write_manifest",
    "load_model", "read_checkpoint", "save_checkpoint",
    "CollectConfig", "DreamVideoConfig", "EncodeConfig", "MemoryTrainConfig", "VisionTrainConfig", "EvaluateConfig",
    "collect", "train_vision", "train_encode", "train_memory", "evaluate", "record_dream", "write_video",
    "Episode", "list_episodes", "read_episode", "write_episode", "RandomExplorationPolicy", "RandomPolicyFactory",
    "FRAME_SHAPE", "HUD_ROWS", "car_speed", "car_yaw_rate", "hud_speed", "hud_yaw_rate", "make_real_env", "preprocess_frames", "to_uint8_hwc", "BatchedDream", "DreamEnv", "DreamCars", "DreamMap", "TileReward", "car_state", "dream_with_car", "visited_road", "WorldModel",
    "WorldModelObservation", "RealTracker", "load_vision", "CheckpointError", "ConfigError", "DreamExplorerError", "EpisodeError",
    "StageCancelled", "EvaluationResult", "mixture_mean", "sample_mdn", "Progress", "ProgressFn", "StageResult",
    "ControllerTrainConfig", "train_controller", "DistillConfig", "distill_controller", "IterateConfig", "iterate", "make_executor", "WorkerCrashed",
    "TaskFailed", "ControllerPolicyFactory", "WorldModelFiles", "DivergenceConfig", "dream_divergence",
    "road_offset", "road_share", "tracks_road",
]  # fmt: skip
