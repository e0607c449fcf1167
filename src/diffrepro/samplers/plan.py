"""The sweep of one (model, sampler): which (grid × NFE × seed) cells run and which are skipped (with the reason),
the GITS grid built lazily from a teacher run (GEO §3.2), and the loops that run
the cells or the reference PF-ODE solution per seed, returning arrays and manifest records (no file I/O)."""
from __future__ import annotations

import time

GITS_WARMUP_SEED = 1_000_000  # warm-up noises are not evaluation seeds (GEO §3.2)


def resolve_grids(sampling: dict, sampler_name: str) -> list[str]:
    """Grid names of the sweep for one sampler (`default` = the sampler's recommended grid), checked, unique."""
    from ..errors import UserError
    from . import GRIDS, get_sampler

    spec = get_sampler(sampler_name)
    names = []
    for i, g in enumerate(sampling["grids"]):
        name = spec.default_grid if g == "default" else g
        if name not in GRIDS and name != "gits":
            raise UserError(f"sampling.grids[{i}] = '{g}' is not a grid (known: {sorted(GRIDS) + ['gits', 'default']})")
        if name not in names:
            names.append(name)
    for key in sampling.get("grid_options", {}):
        if key not in GRIDS and key != "gits":
            raise UserError(f"sampling.grid_options.{key}: not a grid (known: {sorted(GRIDS) + ['gits']})")
    return names


def _skip(cell: dict, reason: str) -> dict:
    return {**{k: cell[k] for k in ("key", "grid", "nfe", "seed")}, "reason": reason}


def plan(sampling: dict, sampler_name: str, trained_nfe=None) -> tuple[list[dict], list[dict]]:
    """(cells, skipped): every (grid, nfe, seed) with its step count; unrealisable NFE are skipped, with the reason,
    and so are, given `trained_nfe` (a learned sampler's NFE), the cells at other NFE."""
    from .registry import get_sampler

    spec = get_sampler(sampler_name)
    user_opts = sampling.get("sampler_options", {}).get(sampler_name)
    opts = spec.merged_options(user_opts)
    afs, dz = opts.get("afs", False), bool(opts.get("denoise_to_zero"))
    per_step = spec.evals_per_step(user_opts)
    cells, skipped = [], []
    for grid in resolve_grids(sampling, sampler_name):
        for nfe in sampling["nfe"]:
            steps = spec.steps_for_nfe(nfe, options=user_opts)
            # afs: auto is decided here, per NFE, and travels with the cell
            decided = {"afs": spec.concrete_options(nfe, user_opts)["afs"]} if afs == "auto" else {}
            for seed in sampling["seeds"]:
                key = f"{grid}/nfe{nfe}/seed{seed}"
                if steps is None:
                    skipped.append({"key": key, "grid": grid, "nfe": nfe, "seed": seed,
                                    "reason": f"{sampler_name} uses {per_step} NFE per step "
                                              f"(afs={afs}, denoise_to_zero={dz}): no whole number of steps"})
                else:
                    cells.append({"key": key, "grid": grid, "nfe": nfe, "seed": seed, "steps": steps,
                                  "options": decided})
    if trained_nfe:  # a learned sampler runs only where it was trained
        skipped += [_skip(c, f"no AMED predictor for NFE {c['nfe']} (sampling.amed.nfe)") for c in cells
                    if c["nfe"] not in trained_nfe]
        cells = [c for c in cells if c["nfe"] in trained_nfe]
    return cells, skipped


def matrix_plan(sampling: dict, sampler_name: str, matrices: dict) -> tuple[list[dict], list[dict]]:
    """(cells, []) of a coefficient-matrix sampler (NI §3.1): every (matrix, seed), on the matrix's own grid and NFE.
    `matrices` maps each matrix file to (grid name, NFE), the name from its nodes (`grids.named_grid_of`)."""
    from ..errors import UserError

    cells, owner = [], {}
    for path, (grid, nfe) in matrices.items():
        for seed in sampling["seeds"]:
            key = f"{grid}/nfe{nfe}/seed{seed}"
            if key in owner:
                raise UserError(f"{sampler_name}: matrix files {owner[key]} and {path} both make cell {key}")
            owner[key] = path
            cells.append({"key": key, "grid": grid, "nfe": nfe, "seed": seed, "steps": nfe, "matrix": str(path)})
    return cells, []


def gits_grid_builder(sampling, cfg, denoiser, schedule, shape, device):
    """steps → GITS grid on the model schedule; the teacher runs once, lazily (EDM coordinates, GEO §3.2)."""
    from ..diffusion.denoisers import reschedule
    from ..errors import UserError
    from .gits import GITS
    from .grids import convert_grid, edm
    from .sweep import initial_noise, native_schedule

    o = {"coeff": 1.15, "teacher_steps": 60, "warmup": 256, "metric": "dev", "rho": 7.0, "teacher": "ipndm",
         **sampling.get("grid_options", {}).get("gits", {})}
    state: dict = {}

    def build(steps: int):
        if steps >= int(o["teacher_steps"]):
            raise UserError(f"GITS chooses {steps} steps from a {o['teacher_steps']}-step teacher grid: raise "
                            f"sampling.grid_options.gits.teacher_steps")
        if "gits" not in state:
            sched = native_schedule("edm", schedule)
            teacher_grid = convert_grid(edm(schedule, int(o["teacher_steps"]), rho=float(o["rho"])), schedule, sched)
            eps = initial_noise((int(o["warmup"]), *shape[1:]), cfg["seed"], GITS_WARMUP_SEED).to(device)
            x = eps * float(sched.sigma(float(teacher_grid[0])))
            state["sched"] = sched
            state["gits"] = GITS(reschedule(denoiser, schedule, sched), sched, teacher_grid, x, coeff=float(o["coeff"]),
                                 metric=o["metric"], teacher=o["teacher"])
        return convert_grid(state["gits"](steps), state["sched"], schedule)

    unknown = set(o) - {"coeff", "teacher_steps", "warmup", "metric", "rho", "teacher"}
    if unknown:
        raise UserError(f"sampling.grid_options.gits: unknown option(s) {sorted(unknown)}")
    return build, state


def coordinate_problem(coords: str, schedule, grid) -> str | None:
    """Why a grid cannot be moved into a sampler's coordinates (None if it can)."""
    if coords == "model":
        return None
    if float(grid[-1]) == 0.0:
        return f"grid ends at t = 0 (clean); samplers in {coords} coordinates cannot step to σ = 0"
    if float(schedule.alpha(float(grid[0]))) <= 0.0:
        return (f"grid starts at pure noise (α = 0) of schedule '{schedule.name}', which has no σ_ve; samplers in "
                f"{coords} coordinates need the model schedule's t_max < 1")
    return None


def sample_cells(cfg: dict, sampling: dict, sampler: str, cells: list[dict], skipped: list[dict], predictors: dict,
                 decide, denoiser, schedule, shape, device, bar, gits=None, matrices=None) -> tuple[dict, list[dict]]:
    """(arrays keyed by cell, manifest records) of every planned cell; cells whose grid cannot be made on this schedule
    or moved into the sampler's coordinates join `skipped`. `predictors`: NFE → (path, AMED predictor), whose step
    options `decide(predictor, grid)` gives; `bar.update(1)` is called once per cell. `gits`: a
    `gits_grid_builder` result to share between samplers of one model (built here otherwise). `matrices`: file →
    NIMatrix for the cells of a coefficient-matrix sampler (`matrix_plan`), which run on the matrix's nodes."""
    import torch

    from ..errors import UserError
    from .registry import get_sampler
    from .sweep import initial_noise, model_grid, noise_seed, run_cell

    spec = get_sampler(sampler)
    options = sampling.get("sampler_options", {}).get(sampler)
    gits, gits_state = gits or gits_grid_builder(sampling, cfg, denoiser, schedule, shape, device)
    grid_opts = sampling.get("grid_options", {})
    arrays, records = {}, []
    noises = {s: initial_noise(shape, cfg["seed"], s).to(device) for s in sampling["seeds"]}
    for cell in cells:
        bar.update(1)
        g0 = time.perf_counter()
        matrix = matrices[cell["matrix"]] if "matrix" in cell else None  # a coefficient matrix runs on its nodes
        try:
            grid = (torch.as_tensor(matrix.times, dtype=torch.float64) if matrix is not None else
                    model_grid(cell["grid"], schedule, cell["steps"], grid_opts.get(cell["grid"]), gits))
        except UserError as exc:  # a grid this schedule cannot make (e.g. respaced on a continuous schedule)
            skipped.append(_skip(cell, str(exc)))
            continue
        grid_s = time.perf_counter() - g0
        reason = coordinate_problem(spec.coords, schedule, grid)
        if reason:
            skipped.append(_skip(cell, reason))
            continue
        amed = {}
        if cell["nfe"] in predictors:
            path, predictor = predictors[cell["nfe"]]
            amed = {"amed": {"predictor": str(path), **decide(predictor, grid)}}
        cell_options = {**(options or {}), **cell.get("options", {}),
                        **({"matrix": matrix} if matrix is not None else {}),
                        **{k: v for k, v in amed.get("amed", {}).items() if k != "predictor"}}
        seed = noise_seed(cfg["seed"], cell["seed"])
        stochastic = spec.stochastic or (matrix is not None and not matrix.deterministic)
        out, rec = run_cell(denoiser, schedule, sampler, grid, noises[cell["seed"]], options=cell_options,
                            sde_seed=seed + 1, batch_size=sampling["batch_size"])
        arrays[cell["key"]] = out.detach().cpu().float().numpy()
        records.append({"key": cell["key"], "grid": cell["grid"], "nfe": cell["nfe"],
                        "nfe_measured": rec["nfe_measured"], "seed": cell["seed"], "wall_s": rec["wall_s"],
                        "t_grid": rec["t_grid"], "coords": rec["coords"], "steps": cell["steps"],
                        "model_t_grid": [float(v) for v in grid], "grid_wall_s": grid_s, "noise_seed": seed,
                        **cell.get("options", {}), **({"matrix": cell["matrix"]} if matrix is not None else {}),
                        **({"sde_seed": seed + 1} if stochastic else {}),
                        **({"gits_indices": gits_state["gits"].indices[cell["steps"]]} if cell["grid"] == "gits"
                           else {}), **amed})
    return arrays, records


def reference_cells(cfg: dict, sampling: dict, denoiser, schedule, shape, device, bar) -> tuple[dict, list[dict]]:
    """(arrays keyed `seedK`, per-seed records): the high-accuracy PF-ODE solution from each seed's initial noise and
    its self-consistency against half the steps (`sampling.reference`)."""
    from .reference import self_consistency
    from .sweep import initial_noise, noise_seed

    ref = sampling["reference"]
    steps, solver = int(ref.get("steps", 500)), ref.get("solver", "heun")
    arrays, seeds = {}, []
    for seed in sampling["seeds"]:
        eps = initial_noise(shape, cfg["seed"], seed).to(device)
        res = self_consistency(denoiser, schedule, eps, steps, solver)
        arrays[f"seed{seed}"] = res.pop("reference").detach().cpu().float().numpy()
        seeds.append({"seed": seed, "noise_seed": noise_seed(cfg["seed"], seed), **res})
        bar.update(1)
    return arrays, seeds
