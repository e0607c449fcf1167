"""Glue between the config, the data and the MDM core: build a diffusion + network for a study, load its data,
evaluate a trained pair. Functions of tensors and dicts; `load_model` and `load_split` read the step's input files."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError
from .elbo import ImportanceTime, bits_per_dim, boundary_term, elbo
from .linear import BetaSchedule, LinearDiffusion
from .network import build_network
from .train import to_model_space

LEVELS = {"digits": 17, "mnist": 256, "fashion_mnist": 256, "cifar10": 256}  # grey levels of the discrete image datasets


def study_config(cfg: dict, dataset: str) -> dict:
    studies = cfg.get("mdm", {}).get("studies", {})
    if dataset not in studies:
        raise UserError(f"mdm.studies has no entry '{dataset}' (known: {sorted(studies)})")
    if dataset not in cfg["datasets"]:
        raise UserError(f"mdm.studies.{dataset}: '{dataset}' is not a key of 'datasets'")
    return studies[dataset]


def levels_of(cfg: dict, dataset: str) -> int | None:
    return LEVELS.get(cfg["datasets"][dataset]["kind"])


def times_of(cfg: dict) -> ImportanceTime:
    m = cfg.get("mdm", {})
    return ImportanceTime(BetaSchedule(m.get("beta0", 0.1), m.get("beta1", 10.0)), m.get("t_min", 1e-3))


def make_diffusion(cfg: dict, name: str, seed: int) -> LinearDiffusion:
    m = cfg.get("mdm", {})
    return LinearDiffusion(name, BetaSchedule(m.get("beta0", 0.1), m.get("beta1", 10.0)), m.get("init_aux_var", 0.01),
                           generator=torch.Generator().manual_seed(seed))


def make_network(study: dict, k: int, data_shape: tuple[int, ...], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(study["network"], k, data_shape)


def load_split(path, split: str, levels: int | None) -> torch.Tensor:
    """x_<split> from a prepared data.npz; discrete images are checked to sit on the `levels` grid."""
    from ..data import load_npz

    arrays = load_npz(path, (f"x_{split}",))
    x = torch.from_numpy(np.asarray(arrays[f"x_{split}"], dtype=np.float32))
    if levels is not None:
        k = (x.double() + 1) * 0.5 * (levels - 1)
        if (k - k.round()).abs().max() > 1e-3:
            raise UserError(f"{path}: x_{split} is not on a {levels}-level grid in [-1, 1]; cannot dequantise "
                            f"(resized images are not supported by the MDM BPD)")
    return x


@torch.no_grad()
def evaluate(net, diffusion: LinearDiffusion, x: torch.Tensor, times: ImportanceTime, levels: int | None,
             draws: int, batch_size: int, seed: int) -> dict:
    """Test-set bound averaged over `draws` estimator draws per point; common random numbers via `seed`.

    Returns per-point means of the ELBO (nats, model space), the boundary term, and the data-space figure:
    NLL bound in nats/point for continuous data, or bits/dim for images (with and without the boundary term).
    """
    dims = x[0].numel()
    elbos, offsets, ldjs = [], [], []
    offset_ok = True
    for r in range(draws):
        gen = torch.Generator().manual_seed(seed * 100003 + r)
        uniform = torch.rand(x.shape[0], generator=gen, dtype=torch.float64)
        e_r, o_r, l_r = [], [], []
        for start in range(0, x.shape[0], batch_size):
            y, ldj = to_model_space(x[start:start + batch_size], levels, gen)
            e_r.append(elbo(net, diffusion, y, times, gen, uniform[start:start + batch_size]))
            l_r.append(ldj)
            if offset_ok:
                try:
                    o_r.append(boundary_term(net, diffusion, y, times.t_min, gen))
                except FloatingPointError:
                    offset_ok = False
        elbos.append(torch.cat(e_r)); ldjs.append(torch.cat(l_r))
        if offset_ok:
            offsets.append(torch.cat(o_r))
    elbo_pt = torch.stack(elbos).mean(0)
    ldj_pt = torch.stack(ldjs).mean(0)
    offset_pt = torch.stack(offsets).mean(0) if offset_ok else torch.full_like(elbo_pt, float("nan"))

    def score(total: torch.Tensor) -> torch.Tensor:  # per-point figure: lower is better
        return -total if levels is None else bits_per_dim(total, ldj_pt, dims, levels)

    no_off, with_off = score(elbo_pt), score(elbo_pt + offset_pt)
    n = x.shape[0]
    return {"metric": "nll_nats" if levels is None else "bpd", "dims": dims, "n_test": n, "draws": draws,
            "value_no_offset": float(no_off.mean()), "se_no_offset": float(no_off.std() / math.sqrt(n)),
            "value_offset": float(with_off.mean()), "se_offset": float(with_off.std() / math.sqrt(n)),
            "offset_nats": float(offset_pt.mean()), "offset_available": offset_ok,
            "elbo_nats": float(elbo_pt.mean())}


def describe_diffusion(diffusion: LinearDiffusion, x_scale: float = 1.0) -> dict:
    """Q, D, eig(A₀) and the terminal KL at a typical coordinate value (spec §3.2, claim B3)."""
    with torch.no_grad():
        q, d = diffusion.matrices()
        eig = torch.linalg.eigvals(diffusion.drift())
        kl = diffusion.terminal_kl(torch.tensor([x_scale], dtype=torch.float64))
    return {"Q": q.tolist(), "D": torch.diagonal(d).tolist(), "eig_A0": [[float(e.real), float(e.imag)] for e in eig],
            "terminal_kl_nats": float(kl[0]), "terminal_kl_at": x_scale}


def describe_network(spec: dict) -> str:
    arch = spec.get("arch", "mlp")
    return f"{arch} (" + ", ".join(f"{k} {v}" for k, v in spec.get(arch, {}).items()) + ")"


def load_model(path, cfg: dict):
    """(network on the runtime's device, diffusion, meta, training history) from an `mdm train` model file."""
    from pathlib import Path

    from ..io import verify_checksum
    from ..runtime import select_device
    from .network import OnDevice

    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing input file: {path}")
    verify_checksum(path, "MDM model file")
    try:  # our own file (checksum as written); it pickles the diffusion's metadata, hence weights_only=False
        payload = torch.load(path, map_location="cpu", weights_only=False)
        meta = payload["meta"]
    except Exception as exc:
        raise UserError(f"MDM model file {path} is corrupt or unreadable ({type(exc).__name__}: {exc})") from None
    diffusion = make_diffusion(cfg, meta["diffusion"], meta["seed"])
    diffusion.load_state_dict(payload["diffusion"])
    net = make_network({"network": meta["network"]}, meta["k"], tuple(meta["data_shape"]), meta["seed"])
    net.load_state_dict(payload["net"])
    net.eval()
    return OnDevice(net, select_device(cfg.get("runtime"))), diffusion, meta, payload["history"]


def evaluation_row(cfg: dict, dataset: str, model_path: str, net, diffusion: LinearDiffusion, meta: dict,
                   history: dict, x_test: torch.Tensor, times: ImportanceTime, levels: int | None, scorer):
    """(row of evaluation.json, data-space samples) of one trained MDM: the test bound with and without the boundary
    term, and its samples scored by the sweep's `scorer`."""
    from .elbo import inverse_logit
    from .sampling import sample

    st = study_config(cfg, dataset)
    ev = st["eval"]
    result = evaluate(net, diffusion, x_test, times, levels, ev["draws"], ev["batch_size"], seed=cfg["seed"])
    x_scale = float(x_test.double().pow(2).mean().sqrt()) if levels is None else 2.944  # spec §3.2: logit(0.95)
    gen = torch.Generator().manual_seed(cfg["seed"] * 7919 + meta["seed"])
    xs = sample(net, diffusion, ev["n_samples"], tuple(meta["data_shape"]), ev["sample_steps"], times.t_min,
                gen, ev["sampler"])
    data_space = xs if levels is None else inverse_logit(xs)  # images: pixels in [-1, 1], like every sampler
    row = {"dataset": dataset, "diffusion": meta["diffusion"], "seed": meta["seed"], "k": meta["k"],
           "train_steps": st["train"]["steps"], "train_wall_s": history["wall_s"],
           "final_train_loss": history["loss"][-1], "network": describe_network(meta["network"]),
           "model": model_path, "n_samples": ev["n_samples"], "sampler": ev["sampler"],
           "sample_steps": ev["sample_steps"], "sample_metrics": scorer(data_space), **result,
           **describe_diffusion(diffusion, x_scale)}
    return row, data_space.numpy()


def train_model(cfg: dict, dataset: str, diffusion_name: str, seed: int, data: torch.Tensor) -> dict:
    """The model-file payload of one MDM (ε-network and linear diffusion trained jointly on `data`, MDM §4): weights,
    diffusion state, training history and the meta that `load_model` rebuilds them from."""
    from ..runtime import select_device
    from .network import OnDevice
    from .train import train

    st = study_config(cfg, dataset)
    levels, data_shape = levels_of(cfg, dataset), tuple(data.shape[1:])
    diffusion = make_diffusion(cfg, diffusion_name, seed)
    net = make_network(st, diffusion.k, data_shape, seed)
    tr = st["train"]
    history = train(OnDevice(net, select_device(cfg.get("runtime"))), diffusion, data, steps=tr["steps"],
                    batch_size=tr["batch_size"], lr=tr["lr"], grad_clip=tr.get("grad_clip", 2.0), times=times_of(cfg),
                    seed=seed, levels=levels, log_every=tr.get("log_every", 100),
                    desc=f"mdm train {dataset}/{diffusion_name}/seed{seed}")
    return {"net": net.cpu().state_dict(), "diffusion": diffusion.state_dict(), "history": history,
            "meta": {"dataset": dataset, "diffusion": diffusion_name, "seed": seed, "k": diffusion.k,
                     "data_shape": list(data_shape), "levels": levels, "network": st["network"],
                     "mdm": {k: v for k, v in cfg["mdm"].items() if k != "studies"}}}
