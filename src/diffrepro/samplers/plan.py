"""The sweep's cell plan for one (model, sampler): which (grid × NFE × seed) cells run and which are skipped (with the
reason), the GITS grid built lazily from a teacher run (GEO §3.2), and AMED's per-cell decisions (GEO §3.3)."""
from __future__ import annotations

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


def plan(sampling: dict, sampler_name: str) -> tuple[list[dict], list[dict]]:
    """(cells, skipped): every (grid, nfe, seed) with its step count; unrealisable NFE are skipped, with the reason."""
    from .registry import get_sampler

    spec = get_sampler(sampler_name)
    user_opts = sampling.get("sampler_options", {}).get(sampler_name)
    opts = spec.merged_options(user_opts)
    afs, dz = bool(opts.get("afs")), bool(opts.get("denoise_to_zero"))
    per_step = spec.evals_per_step(user_opts)
    cells, skipped = [], []
    for grid in resolve_grids(sampling, sampler_name):
        for nfe in sampling["nfe"]:
            steps = spec.steps_for_nfe(nfe, options=user_opts)
            for seed in sampling["seeds"]:
                key = f"{grid}/nfe{nfe}/seed{seed}"
                if steps is None:
                    skipped.append({"key": key, "grid": grid, "nfe": nfe, "seed": seed,
                                    "reason": f"{sampler_name} uses {per_step} NFE per step "
                                              f"(afs={afs}, denoise_to_zero={dz}): no whole number of steps"})
                else:
                    cells.append({"key": key, "grid": grid, "nfe": nfe, "seed": seed, "steps": steps})
    return cells, skipped


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


def amed_decisions(predictor, sampler: str, schedule, grid) -> dict:
    """The predictor's decisions (one float per step) on a cell's grid in the sampler's coordinates."""
    from ..amed import decisions_for
    from .grids import convert_grid
    from .registry import get_sampler
    from .sweep import native_schedule

    native = native_schedule(get_sampler(sampler).coords, schedule)
    return decisions_for(predictor, convert_grid(grid, schedule, native).tolist())
