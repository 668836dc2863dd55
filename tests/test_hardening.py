"""Bad input and faults end in one clear line and exit code 2, with nothing overwritten (issue 15)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import save_checkpoint
from core.data.datasets import LatentEpisodes
from core.errors import NonFiniteError
from core.models import MDNRNN, MDNRNNConfig
from explorer.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process; the exit code and what it wrote to stderr."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # tyro's own usage errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str, *needles: str) -> None:
    """Exit code 2 and one ``error:`` line (after any progress bar of a stage that had started), no traceback."""
    assert code == 2, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[-1], err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_latents(path: Path, episodes: int = 3, steps: int = 20, z_dim: int = 4) -> Path:
    rng = np.random.default_rng(0)
    rows = episodes * (steps + 1)
    LatentEpisodes(
        mu=rng.normal(size=(rows, z_dim)).astype(np.float32),
        logvar=np.full((rows, z_dim), -2.0, np.float32),
        actions=rng.uniform(-1, 1, size=(episodes * steps, 3)).astype(np.float32),
        rewards=rng.normal(size=episodes * steps).astype(np.float32),
        terminated=np.zeros(episodes * steps, np.float32),
        starts=np.arange(episodes + 1) * (steps + 1),
        seeds=np.arange(episodes),
        vision_kind="conv_vae",
        vision_sha256="0" * 64,
    ).save(path)
    return path


# -- non-finite and out-of-range values -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, field",
    [
        (("train-controller", "--tau", "nan"), "tau"),
        (("train-controller", "--sigma0", "inf"), "sigma0"),
        (("train-memory", "--lr", "inf"), "lr"),
        (("train-memory", "--grad-clip", "nan"), "grad-clip"),
        (("train-vision", "--lr", "nan"), "lr"),
        (("dream", "--tau", "inf"), "tau"),
        (("divergence", "--tau", "nan"), "tau"),
        (("collect", "--noise-std", "inf"), "noise-std"),
        (("iterate", "--noise-std", "nan"), "noise-std"),
        (("iterate", "--train-controller.tau", "nan"), "tau"),  # a nested config's field
        (("iterate", "--train-memory.lr", "inf"), "lr"),
        (("distill-controller", "--lr", "inf"), "lr"),
    ],
)
def test_non_finite_config_values_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], field: str
) -> None:
    one_line_error(*run(capsys, *args), field, "finite")


def test_range_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(*run(capsys, "train-memory", "--seq-len", "1"), "seq_len")
    one_line_error(*run(capsys, "train-memory", "--hidden-dim", "200000"), "hidden_dim")  # ~640 GB of LSTM


def test_save_checkpoint_refuses_non_finite_weights(tmp_path: Path) -> None:
    model = MDNRNN(MDNRNNConfig(z_dim=4, hidden_dim=8))
    out = save_checkpoint(tmp_path / "m.safetensors", model, kind="mdnrnn", config=model.config)
    before = digest(out)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        save_checkpoint(out, model, kind="mdnrnn", config=model.config)
    assert digest(out) == before and [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_diverging_memory_run_stops_and_keeps_the_last_finite_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    latents = tiny_latents(tmp_path / "lat.npz")
    out = tmp_path / "m.safetensors"
    common = ("--latents", str(latents), "--out", str(out), "--seq-len", "8", "--batch-size", "2",
              "--hidden-dim", "8", "--val-fraction", "0")  # fmt: skip
    assert run(capsys, "train-memory", *common, "--epochs", "1")[0] == 0
    before = digest(out)
    code, err = run(capsys, "train-memory", *common, "--epochs", "2", "--lr", "1e30", "--grad-clip", "1e30")
    one_line_error(code, err, "NaN or inf" if "weights" in err else "loss became", "lower --lr")
    assert digest(out) == before


# -- models that do not belong together --------------------------------------------------------------------------
def memory_recording(path: Path, **extra: str) -> Path:
    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig())
    return save_checkpoint(path, model, kind="mdnrnn", config=model.config, extra=extra)


def test_memory_trained_on_another_kind_of_vision_is_refused(
    capsys: pytest.CaptureFixture[str], tiny_world_model: dict[str, Path], tmp_path: Path
) -> None:
    memory = memory_recording(tmp_path / "m.safetensors", vision_kind="dds_vae", vision_sha256="0" * 64)
    out = tmp_path / "dream.mp4"
    for stage, extra in (("dream", ("--out", str(out))), ("divergence", ("--data-dir", str(tmp_path)))):
        code, err = run(capsys, stage, "--vision", str(tiny_world_model["vision"]), "--memory", str(memory), *extra)
        one_line_error(code, err, str(memory), "dds_vae", "conv_vae")
    assert not out.exists()


def test_memory_trained_on_another_vision_file_warns_once_in_one_line(
    tiny_world_model: dict[str, Path], tmp_path: Path
) -> None:
    from core.envs.world_model import WorldModel
    from core.errors import LineageWarning
    from core.policies_wm import WorldModelFiles

    other = memory_recording(tmp_path / "m.safetensors", vision_kind="conv_vae", vision_sha256="f" * 64)
    with pytest.warns(LineageWarning, match="another vision checkpoint") as record:
        WorldModelFiles.read(tiny_world_model["vision"], other).load()  # checked in the parent, not per worker
    assert len(record) == 1 and "\n" not in str(record[0].message)
    from core.data.datasets import file_sha256

    own = memory_recording(
        tmp_path / "own.safetensors", vision_kind="conv_vae", vision_sha256=file_sha256(tiny_world_model["vision"])
    )
    assert WorldModel.load(tiny_world_model["vision"], own).lineage_warning is None


def test_exported_vision_stands_for_its_source(tiny_world_model: dict[str, Path], tmp_path: Path) -> None:
    from core.assets import default_paths, export_assets
    from core.data.datasets import file_sha256
    from core.envs.world_model import WorldModel

    memory = memory_recording(
        tmp_path / "m.safetensors", vision_kind="conv_vae", vision_sha256=file_sha256(tiny_world_model["vision"])
    )
    export_assets(tiny_world_model["vision"], memory, None, "conv_vae", tmp_path / "assets")
    shipped = default_paths("conv_vae", tmp_path / "assets")
    assert WorldModel.load(shipped.vision, shipped.memory).lineage_warning is None  # float16 copy, same model
    # latents encoded by the source file: the export stands for it in train-controller's check too
    from core.lineage import same_model_file

    source = file_sha256(tiny_world_model["vision"])
    assert same_model_file(source, tiny_world_model["vision"]) and same_model_file(source, shipped.vision)
    assert not same_model_file("f" * 64, shipped.vision) and not same_model_file(source, tmp_path / "none")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    assert not same_model_file(source, tmp_path / "bad.safetensors")


def test_evaluate_refuses_a_full_controller_as_v_only_before_evaluating(
    capsys: pytest.CaptureFixture[str], tiny_world_model: dict[str, Path]
) -> None:
    controller = str(tiny_world_model["controller"])
    code, err = run(capsys, "evaluate", "--controller", controller, "--v-only", controller, "--episodes", "1")
    one_line_error(code, err, "--v-only", "full controller")


# -- output locations, checked before any work -------------------------------------------------------------------
FILE_OUTPUTS = [
    ("train-vision", "--out"), ("train-memory", "--out"), ("encode", "--out"), ("train-controller", "--out"),
    ("distill-controller", "--out"), ("dream", "--out"), ("compare-vision", "--grid"),
]  # fmt: skip
DIR_OUTPUTS = [("collect", "--out-dir"), ("iterate", "--out-dir"), ("distill-controller", "--episodes-dir")]


@pytest.mark.parametrize("stage, flag", FILE_OUTPUTS + DIR_OUTPUTS)
def test_unwritable_output_locations_are_refused_before_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stage: str, flag: str
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"keep me")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    wrong_kind = a_dir if (stage, flag) in FILE_OUTPUTS else a_file  # a directory where a file goes, or back
    for target, needle in ((wrong_kind, str(wrong_kind)), (a_file / "sub" / "x.out", "is a file, not a directory")):
        code, err = run(capsys, stage, flag, str(target))
        one_line_error(code, err, "cannot write", needle)
    assert a_file.read_bytes() == b"keep me" and list(a_dir.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "a_file"]


def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    import os

    from core.checkpoint import check_output_dir, check_output_file
    from core.errors import OutputError

    read_only = Path("/proc/sys") if os.geteuid() == 0 else tmp_path / "ro"  # root writes through chmod 555
    if read_only != Path("/proc/sys"):
        read_only.mkdir()
        read_only.chmod(0o555)
    with pytest.raises(OutputError, match="not writable"):
        check_output_file(read_only / "new" / "x.safetensors")
    with pytest.raises(OutputError, match="not writable"):
        check_output_dir(read_only / "episodes")


def test_a_failed_write_is_one_line_and_keeps_the_old_file(tmp_path: Path) -> None:
    from core.checkpoint import atomic_path
    from core.errors import OutputError

    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(OutputError, match="previous contents are kept"):
        with atomic_path(target) as tmp:
            raise OSError(28, "No space left on device", str(tmp))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


# -- one validation layer per file kind --------------------------------------------------------------------------
def episode_arrays(steps: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "frames": rng.integers(0, 255, size=(steps + 1, 96, 96, 3), dtype=np.uint8),
        "actions": rng.uniform(0, 1, size=(steps, 3)).astype(np.float32),
        "rewards": np.full(steps, -0.1, np.float32),
        "terminated": np.zeros(steps, bool),
        "truncated": np.zeros(steps, bool),
        "seed": np.int64(3),
        "policy": np.array("random"),
    }


BAD_EPISODES = {
    "seed of the wrong shape": dict(seed=np.arange(2)),
    "0-d actions": dict(actions=np.float32(0.5)),
    "string actions": dict(actions=np.full((6, 3), "a")),
    "NaN actions": dict(actions=np.full((6, 3), np.nan, np.float32)),
    "inf rewards": dict(rewards=np.full(6, np.inf, np.float32)),
    "flags that are not 0/1": dict(terminated=np.full(6, 7.0)),
    "a list of policies": dict(policy=np.array(["random", "random"])),
}


@pytest.mark.parametrize("case", sorted(BAD_EPISODES))
def test_bad_episode_files_are_one_line_errors_naming_the_file(
    capsys: pytest.CaptureFixture[str], tiny_world_model: dict[str, Path], tmp_path: Path, case: str
) -> None:
    episodes = tmp_path / "episodes"
    episodes.mkdir()
    bad = episodes / "ep_0000000003.npz"
    np.savez(bad, **{**episode_arrays(), **BAD_EPISODES[case]})
    out = tmp_path / "latents.npz"
    code, err = run(capsys, "encode", "--data-dir", str(episodes), "--vision", str(tiny_world_model["vision"]),
                    "--out", str(out))  # fmt: skip
    one_line_error(code, err, str(bad))
    assert not out.exists()


def test_an_episode_with_corrupt_frames_is_not_already_present(tmp_path: Path) -> None:
    import zipfile

    from core.data.collect import _is_complete
    from core.data.episodes import Episode, read_episode, write_episode
    from core.errors import EpisodeError

    a = episode_arrays()
    path = write_episode(tmp_path / "ep_0000000003.npz", Episode(**{**a, "seed": 3, "policy": "random"}))
    assert _is_complete(path)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("frames.npy")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = bytes(64)  # a damaged block in the middle of the compressed frames
    path.write_bytes(bytes(data))
    read_episode(path, frames=False)  # the small arrays still read...
    with pytest.raises(EpisodeError, match=str(path)):
        read_episode(path)  # ...the frames do not
    assert not _is_complete(path)  # so collect records this track again


def test_bad_latent_files_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = dict(np.load(tiny_latents(tmp_path / "good.npz")))
    cases = {
        "starts": dict(starts=good["starts"][::-1].copy()),
        "NaN": dict(mu=np.full_like(good["mu"], np.nan)),
        "actions": dict(actions=good["actions"][:, :2]),
    }
    for name, change in cases.items():
        bad = tmp_path / f"{name}.npz"
        np.savez(bad, **{**good, **change})
        code, err = run(capsys, "train-memory", "--latents", str(bad), "--out", str(tmp_path / "m.safetensors"))
        one_line_error(code, err, str(bad), "inconsistent", name)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_foreign_or_empty_resume_state_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from core.checkpoint import resume_path, save_resume_state

    latents = tiny_latents(tmp_path / "lat.npz")
    out = tmp_path / "m.safetensors"
    common = ("--latents", str(latents), "--out", str(out), "--seq-len", "8", "--batch-size", "2", "--hidden-dim", "8")
    assert run(capsys, "train-memory", *common, "--epochs", "1")[0] == 0
    before = digest(out)
    for state, needle in (({}, "'epoch' is missing"), ({"stage": "train-controller", "epoch": 1}, "train-controller run"),
                          ({"epoch": 1, "optimizer": {"state": 3}}, "does not fit")):  # fmt: skip
        save_resume_state(resume_path(out), state)
        code, err = run(capsys, "train-memory", *common, "--epochs", "2", "--resume")
        one_line_error(code, err, str(resume_path(out)), needle)
        assert digest(out) == before


def checkpoint_with_metadata(path: Path, meta: str) -> Path:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path), metadata={"dream_explorer": meta})
    return path


@pytest.mark.parametrize(
    "meta, needle",
    [
        ('{"format_version": 1, "kind": "mdnrnn", "config": [1, 2]}', "config is a list"),
        (
            '{"format_version": 1, "kind": "mdnrnn", "config": {}, "extra": ' + "[" * 5000 + "]" * 5000 + "}",
            "not valid JSON",
        ),
        ('{"format_version": 1, "kind": "mdnrnn", "config": {"hidden_dim": 200000}}', "parameters"),
        ('{"format_version": 1, "kind": "mdnrnn", "config": {"hidden_dim": "256"}}', "wrong type"),
        ('{"format_version": "1", "kind": "mdnrnn"}', "format_version"),
        ('{"format_version": 1, "kind": "mdnrnn", "metrics": {"a": [1]}}', "not a number"),
    ],
)
def test_bad_checkpoint_metadata_is_one_line(
    capsys: pytest.CaptureFixture[str], tiny_world_model: dict[str, Path], tmp_path: Path, meta: str, needle: str
) -> None:
    bad = checkpoint_with_metadata(tmp_path / "m.safetensors", meta)
    code, err = run(capsys, "dream", "--vision", str(tiny_world_model["vision"]), "--memory", str(bad),
                    "--out", str(tmp_path / "d.mp4"))  # fmt: skip
    one_line_error(code, err, str(bad), needle)


def test_a_truncated_round_record_names_the_file(tmp_path: Path) -> None:
    from core.errors import EpisodeError
    from core.train.iterate import _read_round

    for text in ('{"controller": "c.safe', "[" * 100_000):
        record = tmp_path / "round.json"
        record.write_text(text)
        with pytest.raises(EpisodeError, match="corrupt round record .*round.json"):
            _read_round(record)


# -- workers and signals -----------------------------------------------------------------------------------------
def test_the_app_warns_when_loading_an_m_trained_on_another_v(data: Path, tmp_path: Path) -> None:
    from explorer.session import Session, SessionConfig

    session = Session(SessionConfig(vision_runtime="pytorch", assets=data / "assets", mode="real"))
    try:
        other = memory_recording(tmp_path / "other_v.safetensors", vision_kind="conv_vae", vision_sha256="f" * 64)
        message = session.load_checkpoint(other)
        assert "warning:" in message and "another vision checkpoint" in message and session.can_dream
        wrong_kind = memory_recording(tmp_path / "dds_m.safetensors", vision_kind="dds_vae", vision_sha256="f" * 64)
        session.load_checkpoint(wrong_kind)
        assert session.memory is None and not session.can_dream  # refused: its dreams would be noise
        assert session.model_notes["memory"].startswith("unloaded")
    finally:
        session.close()
