"""Models, DSM loss, EMA, checkpoint/resume (bitwise) and model files."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffrepro import data, training
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.errors import UserError
from diffrepro.models import build_model
from diffrepro.training import loss as dsm
from diffrepro.training.state import list_checkpoints

REPO = Path(__file__).resolve().parents[1]


TINY_UNET = {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4]}


def mlp_spec(steps=20, **over):
    spec = {"dataset": "toy", "arch": "mlp", "schedule": {"name": "vp_linear"}, "parameterisation": "eps",
            "mlp": {"hidden": 16, "depth": 2, "time_embed": 8},
            "train": {"steps": steps, "batch_size": 16, "lr": 1e-2, "ema_decay": 0.9, "warmup_steps": 3,
                      "checkpoint_every": 5, "log_every": 5}}
    spec.update(over)
    return spec


def toy_arrays(n=64, labelled=False):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) if labelled else -np.ones(n, np.int64)
    return {"x_train": x, "y_train": y, "x_test": x[:4], "y_test": y[:4]}


# --- models ---------------------------------------------------------------------------------------------------------
def test_mlp_and_unet_shapes_with_null_class():
    mlp = build_model({**mlp_spec(), "class_conditional": True}, [2], num_classes=3)
    x = torch.randn(5, 2)
    assert mlp(x, torch.rand(5)).shape == (5, 2)
    y = torch.tensor([0, 1, 2, 3, 3])  # 3 = the null class
    out_c, out_null = mlp(x, torch.full((5,), 0.5), y), mlp(x, torch.full((5,), 0.5))
    assert torch.allclose(out_c[3:], out_null[3:])  # y=None means the null class
    unet = build_model({"arch": "unet", "schedule": {"name": "vp_linear"}, "unet": TINY_UNET}, [1, 8, 8])
    assert unet(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)
    odd = build_model({"arch": "unet", "schedule": {"name": "vp_linear"},
                       "unet": {**TINY_UNET, "channel_mult": [1, 2, 2]}}, [3, 28, 28])
    assert odd(torch.randn(1, 3, 28, 28), torch.rand(1)).shape == (1, 3, 28, 28)


def test_time_input_changes_the_output():
    mlp = build_model(mlp_spec(), [2])
    for p in mlp.parameters():  # zero-initialised output layers would hide the time dependence
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 2)
    assert not torch.allclose(mlp(x, torch.full((3,), 0.1)), mlp(x, torch.full((3,), 0.9)))


def test_build_model_rejects_mismatched_data():
    with pytest.raises(UserError, match="mlp"):
        build_model(mlp_spec(), [1, 8, 8])
    with pytest.raises(UserError, match="unet"):
        build_model({"arch": "unet", "schedule": {"name": "vp_linear"}, "unet": TINY_UNET}, [2])
    with pytest.raises(UserError, match="labelled"):
        build_model({**mlp_spec(), "class_conditional": True}, [2], num_classes=0)


# --- loss -----------------------------------------------------------------------------------------------------------
def test_training_times_follow_the_schedule():
    g = torch.Generator().manual_seed(0)
    disc = make_schedule("vp_discrete", num_timesteps=50)
    t = dsm.sample_times(disc, 500, g, "cpu")
    assert torch.allclose(t * 50 - 1, torch.round(t * 50 - 1))  # exactly on t_of_index(i)
    assert t.min() >= disc.t_of_index(0) and t.max() <= disc.t_of_index(49)
    lin = make_schedule("vp_linear")
    t = dsm.sample_times(lin, 500, g, "cpu")
    assert t.min() >= lin.t_min and t.max() <= lin.t_max and t.std() > 0.2
    edm = make_schedule("edm")
    t = dsm.sample_times(edm, 2000, g, "cpu")
    assert abs(torch.log(t).mean().item() - dsm.EDM_P_MEAN) < 0.1


@pytest.mark.parametrize("param,schedule", [("eps", "vp_linear"), ("x0", "cosine"), ("v", "vp_discrete"),
                                            ("edm", "edm"), ("edm", "vp_linear")])
def test_dsm_loss_of_a_perfect_denoiser_is_zero(param, schedule):
    """For x0 ≡ c (a point mass) the optimal network output is known in closed form: feeding it gives zero loss."""
    from diffrepro.diffusion import denoisers

    sch = make_schedule(schedule)
    c = torch.tensor([[0.3, -0.7]])

    def oracle(x_in, time, y=None):
        t = oracle.t
        _, _, c_in, _ = denoisers.preconditioning(param, sch, t)
        x_t = x_in / c_in.reshape(-1, 1).float()
        a, s = sch.alpha(t).reshape(-1, 1).float(), sch.sigma(t).reshape(-1, 1).float()
        eps = (x_t - a * c) / s
        return denoisers.parameterisation_target(param, c.expand_as(x_t), eps, sch, t).float()

    g = torch.Generator().manual_seed(1)
    real_sample_times = dsm.sample_times
    with pytest.MonkeyPatch.context() as mp:
        def spy(*a, **k):
            oracle.t = real_sample_times(*a, **k)
            return oracle.t
        mp.setattr(dsm, "sample_times", spy)
        loss = dsm.dsm_loss(oracle, c.expand(64, 2).contiguous(), None, sch, param, g)
        net = build_model(mlp_spec(), [2])
        bad = dsm.dsm_loss(net, c.expand(64, 2).contiguous(), None, sch, param, g)
    assert loss.item() < 1e-6 and bad.item() > 1e-2


# --- training, EMA, resume ------------------------------------------------------------------------------------------
def run_training(tmp, spec, arrays, steps=None):
    spec = {**spec, "train": {**spec["train"], **({"steps": steps} if steps else {})}}
    return training.train("toy", spec, arrays, tmp, seed=0, cfg_runtime={"device": "cpu"}, progress=False)


def test_resume_is_bitwise_identical_in_process(tmp_path):
    spec, arrays = mlp_spec(steps=20, class_conditional=True, label_dropout=0.3), toy_arrays(labelled=True)
    full = run_training(tmp_path / "full", spec, arrays)
    # interrupted: a run with the same spec that stops at step 10 (its checkpoint at 10 is kept), then resumes
    trainer = training.Trainer("toy", spec, arrays, 0, {"device": "cpu"})
    for _ in range(10):
        trainer.train_step()
    from diffrepro.training.state import save_checkpoint
    save_checkpoint(tmp_path / "part" / "ckpt", trainer.step, trainer.state_dict())
    resumed = run_training(tmp_path / "part", spec, arrays)
    assert resumed["steps_this_run"] == 10 and full["steps_this_run"] == 20
    assert all(torch.equal(full["state_dict"][k], resumed["state_dict"][k]) for k in full["state_dict"])
    other_seed = training.train("toy", spec, arrays, tmp_path / "seed1", seed=1, cfg_runtime={"device": "cpu"},
                                progress=False)
    assert not all(torch.equal(full["state_dict"][k], other_seed["state_dict"][k]) for k in full["state_dict"])
    assert len(list_checkpoints(tmp_path / "full" / "ckpt")) == 2  # keeps the newest two


def test_checkpoints_of_another_config_are_not_resumed(tmp_path):
    arrays = toy_arrays()
    run_training(tmp_path, mlp_spec(steps=10), arrays)
    changed = run_training(tmp_path, mlp_spec(steps=10, parameterisation="x0"), arrays)
    assert changed["steps_this_run"] == 10


def test_corrupt_checkpoint_is_a_user_error_naming_the_file(tmp_path):
    arrays = toy_arrays()
    run_training(tmp_path, mlp_spec(steps=10), arrays)
    newest = list_checkpoints(tmp_path / "ckpt")[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(UserError, match=newest.name):
        run_training(tmp_path, mlp_spec(steps=20), arrays)


def test_training_reduces_the_loss(tmp_path):
    spec = mlp_spec(steps=150)
    spec["train"].update(lr=3e-3, checkpoint_every=1000, log_every=50)
    out = run_training(tmp_path, spec, toy_arrays(256))
    first, last = out["loss_log"][0][1], out["loss_log"][-1][1]
    assert last < 0.8 * first


def test_model_file_round_trip_and_errors(tmp_path):
    from diffrepro import io

    spec = mlp_spec(steps=5, class_conditional=True)
    blob = run_training(tmp_path, spec, toy_arrays(labelled=True))
    path = io.write_with(tmp_path / "model.pt", lambda p: torch.save(blob, p))
    net, loaded_spec = training.load_model(path)
    assert loaded_spec == spec and net.num_classes == 2 and not net.training
    assert all(torch.equal(net.state_dict()[k], blob["state_dict"][k]) for k in blob["state_dict"])
    D = training.model_denoiser(net, loaded_spec, labels=1, guidance_scale=2.0)
    assert D(torch.randn(4, 2), 0.5).shape == (4, 2)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="bad.pt"):
        training.load_model(bad)
    with pytest.raises(UserError, match="missing"):
        training.load_model(tmp_path / "absent.pt")


# --- the acceptance test: SIGKILL a real `diffrepro train`, rerun, compare with an uninterrupted run -------------
def write_params(path: Path, steps: int) -> Path:
    cfg = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    cfg["models"]["toy2d"]["mlp"] = {"hidden": 16, "depth": 1, "time_embed": 8}
    cfg["models"]["toy2d"]["train"] = {"steps": steps, "batch_size": 32, "lr": 2e-3, "ema_decay": 0.99,
                                       "checkpoint_every": 25, "log_every": 25}
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_cmd(params, data_npz, out):
    return [sys.executable, "-m", "diffrepro", "train", "--params", str(params), "--model", "toy2d", "--data",
            str(data_npz), "--out-dir", str(out), "--threads", "1"]


@pytest.mark.slow
def test_kill9_then_rerun_matches_an_uninterrupted_run(tmp_path):
    arrays, _ = data.prepare("toy2d", {"kind": "toy2d", "n_train": 256, "n_test": 16}, seed=0)
    npz = data.write_npz(tmp_path / "data.npz", arrays)
    params = write_params(tmp_path / "p.yaml", steps=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(params, npz, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list_checkpoints(killed / "ckpt") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.pt").exists()
    ckpt = list_checkpoints(killed / "ckpt")[-1]
    rerun = subprocess.run(train_cmd(params, npz, killed), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed from {ckpt}" in rerun.stderr or "resumed from" in rerun.stderr
    straight = subprocess.run(train_cmd(params, npz, tmp_path / "straight"), capture_output=True, text=True,
                              timeout=120)
    assert straight.returncode == 0, straight.stderr
    a, _ = training.load_model(killed / "model.pt")
    b, _ = training.load_model(tmp_path / "straight" / "model.pt")
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    # a corrupt newest checkpoint stops the CLI with exit code 2 and names the file
    list_checkpoints(killed / "ckpt")[-1].write_bytes(b"\0" * 64)
    (killed / "model.pt").unlink()
    broken = subprocess.run(train_cmd(params, npz, killed), capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and "step_" in broken.stderr and "corrupt" in broken.stderr
