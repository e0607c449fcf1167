"""Model sources (diffrepro.sources): published checkpoints behave like pipeline-trained models.

- an EDM-format network pickle (persistent records with embedded module source), loaded in a process where neither
  `torch_utils` nor `dnnlib` is importable: Euler and Heun through the sweep equal EDM's own σ-loop over the net;
- a diffusers UNet2DModel + DDIMScheduler folder: our DDIM equals diffusers' DDIM loop, and NI's traced respaced-DDIM
  matrix replays it in float64;
- descriptors refuse a changed checkpoint, missing files name the file and its publisher, the schema and the workflow
  treat imported models as such.
"""
from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml

from conftest import ROOT, run_env
from diffrepro.errors import UserError

# --- a network pickle in EDM's persistence record format ---------------------------------------------------------------
# The embedded module source: a VP-preconditioned (and an EDM-preconditioned) wrapper around a tiny conv net, written
# from the preconditioning formulas (GEO §1.2; VP: c_skip = 1, c_out = −σ, c_in = 1/√(σ²+1), c_noise = (M−1)·σ⁻¹(σ)).
MODULE_SRC = textwrap.dedent('''
    import numpy as np
    import torch
    from torch_utils import persistence
    from torch_utils import misc
    import dnnlib


    @persistence.persistent_class
    class TinyNet(torch.nn.Module):
        def __init__(self, channels, label_dim):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(channels, 8, 3, padding=1)
            self.emb = torch.nn.Linear(1 + label_dim, 8)
            self.conv2 = torch.nn.Conv2d(8, channels, 3, padding=1)

        def forward(self, x, noise_labels, class_labels=None):
            e = noise_labels.reshape(-1, 1).expand(len(x), 1)
            if class_labels is not None:
                e = torch.cat([e, class_labels.expand(len(x), -1)], 1)
            h = torch.nn.functional.silu(self.conv1(x) + self.emb(e)[:, :, None, None])
            return x + 0.1 * self.conv2(h)  # near the identity on its (c_in-scaled) input: data-scale outputs


    @persistence.persistent_class
    class VPPrecond(torch.nn.Module):
        def __init__(self, img_resolution, img_channels, label_dim=0, beta_d=19.9, beta_min=0.1, M=1000,
                     epsilon_t=1e-5):
            super().__init__()
            self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
            self.use_fp16 = False
            self.beta_d, self.beta_min, self.M, self.epsilon_t = beta_d, beta_min, M, epsilon_t
            self.sigma_min, self.sigma_max = float(self.sigma(epsilon_t)), float(self.sigma(1))
            self.model = TinyNet(img_channels, label_dim)

        def forward(self, x, sigma, class_labels=None, force_fp32=False):
            x = x.to(torch.float32)
            sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
            misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
            if self.label_dim:
                class_labels = class_labels.to(torch.float32).reshape(-1, self.label_dim)
            c_in = 1 / (sigma ** 2 + 1).sqrt()
            c_noise = (self.M - 1) * self.sigma_inv(sigma)
            return x - sigma * self.model(c_in * x, c_noise.flatten(), class_labels).to(torch.float32)

        def sigma(self, t):
            t = torch.as_tensor(t)
            return ((0.5 * self.beta_d * (t ** 2) + self.beta_min * t).exp() - 1).sqrt()

        def sigma_inv(self, sigma):
            sigma = torch.as_tensor(sigma)
            return ((self.beta_min ** 2 + 2 * self.beta_d * (1 + sigma ** 2).log()).sqrt() - self.beta_min) / self.beta_d


    @persistence.persistent_class
    class EDMPrecond(torch.nn.Module):
        def __init__(self, img_resolution, img_channels, label_dim=0, sigma_min=0, sigma_max=float('inf'),
                     sigma_data=0.5):
            super().__init__()
            self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
            self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data
            self.model = TinyNet(img_channels, label_dim)
            self.options = dnnlib.EasyDict(note='EasyDict from the embedded source')

        def forward(self, x, sigma, class_labels=None):
            x = x.to(torch.float32)
            sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
            sd = self.sigma_data
            c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
            c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
            c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()
            return c_skip * x + c_out * self.model(c_in * x, (sigma.log() / 4).flatten(), class_labels)
''')


class _GlobalRef:
    """A pickled reference to a global that does not exist in the writing process (GLOBAL opcode)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle wants the reduce callable to be callable
        raise RuntimeError("only a reference")


RECONSTRUCT = _GlobalRef("torch_utils.persistence", "_reconstruct_persistent_obj")


class RecordPickler(pickle._Pickler):
    """Writes persistent records the way EDM's pickles hold them: (_reconstruct_persistent_obj, (meta,))."""

    dispatch = {**pickle._Pickler.dispatch,
                _GlobalRef: lambda self, obj: self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())}


def _writer_persistent_class(cls):
    """The writing side's decorator: instances reduce to records carrying MODULE_SRC, the class name and state."""
    class Record(cls):
        def __reduce__(self):
            meta = dict(type="class", version=6, module_src=MODULE_SRC, class_name=cls.__name__,
                        state=dict(self.__dict__))
            return RECONSTRUCT, (meta,)
    Record.__name__ = Record.__qualname__ = cls.__name__
    return Record


def build_network_pickle(path: Path, precond: str, **kwargs) -> None:
    import types

    persistence = types.ModuleType("torch_utils.persistence")
    persistence.persistent_class = _writer_persistent_class
    root, misc, dnnlib = (types.ModuleType(n) for n in ("torch_utils", "torch_utils.misc", "dnnlib"))
    root.persistence, root.misc = persistence, misc
    misc.assert_shape = lambda *a: None
    dnnlib.EasyDict = dict
    fake = {"torch_utils": root, "torch_utils.persistence": persistence, "torch_utils.misc": misc, "dnnlib": dnnlib}
    with mock.patch.dict(sys.modules, fake):
        module = types.ModuleType("edm_test_networks")
        exec(MODULE_SRC, module.__dict__)
        torch.manual_seed(0)
        net = getattr(module, precond)(img_resolution=8, img_channels=1, **kwargs)
        with open(path, "wb") as fh:
            RecordPickler(fh, protocol=2).dump({"ema": net, "augment_pipe": None})


LOADER = textwrap.dedent('''
    import importlib.util, json, sys
    import torch
    assert importlib.util.find_spec("torch_utils") is None and importlib.util.find_spec("dnnlib") is None
    from diffrepro import sources
    from diffrepro.samplers.grids import make_grid
    from diffrepro.samplers.sweep import run_cell

    STEPS = 8
    # EDM's own loop in σ: the ρ = 7 grid over [0.002, 80], the net called directly
    K = torch.arange(STEPS + 1, dtype=torch.float64) / STEPS
    SIG = (80 ** (1 / 7) + K * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7


    def edm_loop(net, eps, heun):
        def call(x, s):
            with torch.no_grad():
                return net(x, torch.as_tensor(s, dtype=torch.float64)).to(x.dtype)
        x = eps * float(SIG[0])
        for i in range(STEPS):
            s, s1 = float(SIG[i]), float(SIG[i + 1])
            d = (x - call(x, s)) / s
            x_pred = x + (s1 - s) * d
            x = x + (s1 - s) * 0.5 * (d + (x_pred - call(x_pred, s1)) / s1) if heun else x_pred
        return x


    def check(pkl, out):
        desc = sources.make_descriptor("edm_test", {"dataset": "digits", "source": {"kind": "edm", "path": pkl}})
        torch.save(desc, out)
        model = sources.load_model(out)
        assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
        res = {"schedule": model.schedule.describe(), "kind": model.kind, "shape": model.data_shape,
               "precond": model.info["precond"]}
        for dtype in (torch.float64, torch.float32):  # the state's dtype; the net computes in float32 on a CPU
            eps = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)
            for name in ("euler", "heun"):
                grid = make_grid("edm", model.schedule, STEPS)
                ours, rec = run_cell(model.denoiser(), model.schedule, name, grid, eps)
                key = f"{name}_{str(dtype)[6:]}"
                res[key] = float((ours - edm_loop(model.net, eps, name == "heun")).abs().max())
                res[name + "_nfe"], res["scale"] = rec["nfe_measured"], float(ours.abs().max())
        return res


    print(json.dumps([check(sys.argv[i], sys.argv[i + 1]) for i in range(1, len(sys.argv), 2)]))
''')


def test_edm_pickles_load_without_torch_utils_and_sample_like_edm(tmp_path):
    args = []
    for precond in ("VPPrecond", "EDMPrecond"):
        build_network_pickle(tmp_path / f"{precond}.pkl", precond)
        args += [str(tmp_path / f"{precond}.pkl"), str(tmp_path / f"{precond}.pt")]
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    env = {**run_env(), "PYTHONPATH": ""}  # nothing but the venv: no torch_utils / dnnlib anywhere
    r = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True, text=True, env=env,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "runs the Python code stored in it" in r.stderr  # the one log line
    vp, edm = json.loads(r.stdout.strip().splitlines()[-1])
    assert vp["precond"] == "VPPrecond" and edm["precond"] == "EDMPrecond"
    assert vp["schedule"]["name"] == "vp_linear"  # β0 = β_min, β1 = β_min + β_d
    assert vp["schedule"]["beta0"] == pytest.approx(0.1) and vp["schedule"]["beta1"] == pytest.approx(20.0)
    assert edm["schedule"]["name"] == "edm" and edm["schedule"]["t_max"] == 80.0
    for res in (vp, edm):
        print(res["precond"], {k: v for k, v in res.items() if k.startswith(("euler", "heun", "scale"))})
        assert res["kind"] == "edm" and res["shape"] == [1, 8, 8]
        assert res["euler_nfe"] == 8 and res["heun_nfe"] == 16
        assert res["euler_float64"] <= 1e-6 and res["heun_float64"] <= 1e-6, res
        assert res["euler_float32"] <= 1e-5 * res["scale"] and res["heun_float32"] <= 1e-5 * res["scale"], res


def test_import_model_step_and_changed_checkpoint_is_refused(tmp_path):
    from diffrepro import sources
    from diffrepro.cli import main

    pkl = tmp_path / "edm-test.pkl"
    build_network_pickle(pkl, "EDMPrecond")
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(_smoke_with({"dataset": "digits", "source": {"kind": "edm", "path": str(pkl)}})))
    out = tmp_path / "models" / "published" / "model.pt"
    assert main(["import-model", "--params", str(params), "--model", "published", "--out", str(out)]) == 0
    blob = torch.load(out, weights_only=True)  # a descriptor: no weights
    assert blob["source"] == {"kind": "edm", "path": str(pkl), "ema_key": "ema"} and blob["dataset"] == "digits"
    assert not any(isinstance(v, torch.Tensor) for v in blob.values())
    model = sources.load_model(out)
    assert model.kind == "edm" and model.info["dataset"] == "digits" and model.schedule.name == "edm"
    pkl.write_bytes(pkl.read_bytes() + b"\0")
    with pytest.raises(UserError, match=r"edm-test\.pkl changed since it was imported"):
        sources.load_model(out)


def test_missing_checkpoint_names_file_and_publisher(tmp_path):
    from diffrepro import sources

    spec = {"dataset": "cifar10", "source": {"kind": "edm", "path": str(tmp_path / "edm-cifar10-32x32-uncond-vp.pkl")}}
    with pytest.raises(UserError, match=r"edm-cifar10-32x32-uncond-vp\.pkl.*NVlabs EDM"):
        sources.make_descriptor("edm_vp", spec)
    with pytest.raises(UserError, match=r"google/ddpm-cifar10-32"):
        sources.make_descriptor("ddpm", {"dataset": "cifar10", "source": {"kind": "diffusers",
                                                                           "path": str(tmp_path / "ddpm")}})


def test_guidance_refused_on_edm_nets(tmp_path):
    from diffrepro.sources import edm

    pkl = tmp_path / "n.pkl"
    build_network_pickle(pkl, "EDMPrecond")
    model = edm.open_source({"kind": "edm", "path": str(pkl)}, "cpu")
    with pytest.raises(UserError, match="no unconditional"):
        model.denoiser(guidance_scale=2.0)


# --- diffusers -------------------------------------------------------------------------------------------------------
def _tiny_unet_dir(tmp_path: Path, **scheduler_kw) -> Path:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                 layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                                 up_block_types=("UpBlock2D",) * 2)
    folder = tmp_path / "tiny-ddpm"
    unet.save_pretrained(folder)
    diffusers.DDIMScheduler(**{"num_train_timesteps": 1000, "beta_schedule": "linear", "clip_sample": False,
                               "set_alpha_to_one": True, **scheduler_kw}).save_pretrained(folder)
    return folder


def _loaded(folder: Path):
    from diffrepro.sources import diffusers_unet

    return diffusers_unet.open_source({"kind": "diffusers", "path": str(folder)}, "cpu")


def _ddim_against_diffusers(folder: Path, model, eps) -> tuple[float, float]:
    """(max |ours − diffusers' DDIM loop|, sample scale) over diffusers' own 10 timesteps, from x = σ(t_0)·ε."""
    import diffusers

    from diffrepro.samplers.sweep import run_cell

    sch = diffusers.DDIMScheduler.from_pretrained(folder)
    sch.set_timesteps(10)
    grid = [float(model.schedule.t_of_index(float(t))) for t in sch.timesteps] + [0.0]
    ours, _ = run_cell(model.denoiser(), model.schedule, "ddim", grid, eps)
    sample = eps * float(model.schedule.sigma(grid[0]))
    with torch.no_grad():
        for t in sch.timesteps:
            sample = sch.step(model.net(sample, t).sample, t, sample).prev_sample
    return float((ours - sample).abs().max()), float(sample.abs().max())


def test_diffusers_unet_ddim_matches_diffusers_loop_and_ni_replay(tmp_path):
    from diffrepro.natural_inference.study import replay_difference

    eps = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # β_end = 0.005 keeps ᾱ away from 0, so a random UNet's x0 = (x − σ·ε̂)/α stays at data scale; on the DDPM
    # β table (1e-4 → 0.02) α ≈ 0.02 at t = 900 and the samples reach O(100), where diffusers' float32 ᾱ limits the
    # agreement relative to the sample scale.
    mild = _loaded(_tiny_unet_dir(tmp_path / "mild", beta_end=0.005))
    err_mild, scale_mild = _ddim_against_diffusers(tmp_path / "mild" / "tiny-ddpm", mild, eps)
    model = _loaded(_tiny_unet_dir(tmp_path / "ddpm"))
    assert model.kind == "diffusers" and model.data_shape == [1, 8, 8] and model.schedule.name == "vp_discrete"
    err, scale = _ddim_against_diffusers(tmp_path / "ddpm" / "tiny-ddpm", model, eps)
    model.net.double()  # NI replay in float64: the same network outputs on both paths
    ni_err = replay_difference("ddim", model.schedule, 10, model.denoiser(), eps.double(), 0, grid="respaced")
    print(f"diffusers DDIM vs ours: {err_mild:.2e} (β_end 0.005, samples up to {scale_mild:.3g}), {err:.2e} (DDPM β, "
          f"samples up to {scale:.3g}); NI respaced-DDIM replay {ni_err:.2e}")
    assert err_mild <= 1e-5 and err <= 1e-5 * scale and ni_err <= 1e-10


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_discrete_schedule_takes_the_schedulers_betas(beta_schedule):
    diffusers = pytest.importorskip("diffusers")
    from diffrepro.sources.diffusers_unet import schedule_from_scheduler_config

    sch = diffusers.DDPMScheduler(beta_schedule=beta_schedule, beta_start=1e-4, beta_end=0.02)
    ours = schedule_from_scheduler_config(dict(sch.config), "test")
    assert torch.allclose(ours.alphas_cumprod, sch.alphas_cumprod.double(), rtol=1e-5, atol=1e-7)


def test_v_prediction_unet_is_mapped_to_v(tmp_path):
    folder = _tiny_unet_dir(tmp_path, prediction_type="v_prediction")
    model = _loaded(folder)
    x, t = torch.randn(2, 1, 8, 8), 0.4
    a, s = float(model.schedule.alpha(t)), float(model.schedule.sigma(t))
    with torch.no_grad():
        v = model.net(x, float(model.schedule.index(t))).sample
    assert model.info["parameterisation"] == "v"
    assert torch.allclose(model.denoiser()(x, t), a * x - s * v, atol=1e-6)


# --- params and workflow ---------------------------------------------------------------------------------------------
SOURCES_OK = [{"kind": "edm", "path": "a.pkl"}, {"kind": "edm", "path": "a.pkl", "ema_key": "ema", "sigma_max": 80},
              {"kind": "diffusers", "path": "d", "download": True}]
SOURCES_BAD = [({"kind": "edm"}, "path"), ({"kind": "edm", "path": "a", "download": True}, "download"),
               ({"kind": "diffusers", "path": "d", "ema_key": "x"}, "ema_key"), ({"kind": "hub", "path": "d"}, "kind")]


def _smoke_with(model: dict) -> dict:
    cfg = yaml.safe_load((ROOT / "params/smoke.yaml").read_text())
    cfg["models"]["published"] = model
    return cfg


def test_schema_accepts_and_refuses_source_blocks():
    from diffrepro import config

    for src in SOURCES_OK:
        config.validate(_smoke_with({"dataset": "digits", "source": src}))
    for src, needle in SOURCES_BAD:
        with pytest.raises(UserError, match=needle):
            config.validate(_smoke_with({"dataset": "digits", "source": src}))
    with pytest.raises(UserError, match="models.published.arch"):  # imported: no training keys
        config.validate(_smoke_with({"dataset": "digits", "arch": "mlp", "source": SOURCES_OK[0]}))
    with pytest.raises(UserError, match="arch"):  # trained: training keys required
        config.validate(_smoke_with({"dataset": "digits", "source": {"kind": "train"}}))


def test_dry_run_imports_instead_of_training(tmp_path):
    cfg = _smoke_with({"dataset": "digits", "source": {"kind": "edm", "path": "absent/edm-cifar10-32x32-uncond-vp.pkl"}})
    cfg["sampling"]["models"].append("published")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg))
    targets = ["results/models/published/model.pt", "results/models/toy2d/model.pt"]  # a small DAG: fast
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--configfile", str(params), "--cores",
                        "1", *targets], cwd=ROOT, capture_output=True, text=True, env=run_env(), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jobs = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", r.stdout + r.stderr, flags=re.M)
    producers = [rule for rule, body in jobs if "output: results/models/published/model.pt" in body]
    assert producers == ["import_model"], producers
    assert "train" in {rule for rule, _ in jobs}  # the smoke models are still trained
