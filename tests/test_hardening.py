"""Bad input and faults end in one clear line and exit code 2, with nothing overwritten (issue 15)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import save_checkpoint
from core.cli import main
from core.data.datasets import LatentEpisodes
from core.errors import NonFiniteError
from core.models import MDNRNN, MDNRNNConfig


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
        (("distill-controller", "--lr", "inf"), "lr"),
    ],
)
def test_non_finite_config_values_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], field: str
) -> None:
    one_line_error(*run(capsys, *args), field, "finite")


def test_range_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(*run(capsys, "train-memory", "--seq-len", "1"), "seq_len")


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
