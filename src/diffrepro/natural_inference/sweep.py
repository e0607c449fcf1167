"""A sweep job's coefficient-matrix samplers (`diffrepro sample --matrix SAMPLER=FILE`): the files grouped by sampler,
loaded, node-checked against the model's schedule and planned on their own nodes. Imports only the matrix container,
so the sweep's code hash does not follow the search or the report code."""
from __future__ import annotations

from ..errors import UserError
from .matrix import NIMatrix, check_nodes


def matrix_files(pairs: list[str], samplers: list[str]) -> dict[str, list[str]]:
    """`SAMPLER=FILE` pairs grouped by sampler; every matrix sampler of `samplers` needs at least one."""
    from ..samplers.registry import is_matrix_sampler

    files = {s: [] for s in samplers if is_matrix_sampler(s)}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or name not in files:
            raise UserError(f"--matrix {pair}: expected SAMPLER=FILE, SAMPLER a coefficient-matrix sampler of "
                            f"--sampler ({sorted(files) or 'none given'})")
        files[name].append(path)
    for name, paths in files.items():
        if not paths:
            raise UserError(f"--sampler {name} runs a coefficient matrix: pass --matrix {name}=FILE")
    return files


def matrix_plans(sampling: dict, files: dict[str, list[str]], schedule, plans: dict) -> dict[str, NIMatrix]:
    """Load every matrix file, check its nodes against the model's `schedule` (any schedule: the nodes must be its
    own, NI claim 12), and add each matrix sampler's cells (`samplers.plan.matrix_plan`: the matrix's own grid and
    NFE) to `plans`. Returns file → matrix for `samplers.plan.sample_cells`."""
    from ..samplers.grids import named_grid_of
    from ..samplers.plan import matrix_plan

    matrices = {p: NIMatrix.load(p) for paths in files.values() for p in paths}
    for path, m in matrices.items():
        check_nodes(m, schedule, str(path), require_vp=False)
    plans.update({s: matrix_plan(sampling, s, {p: (named_grid_of(matrices[p].times, schedule), matrices[p].n)
                                                for p in paths}) for s, paths in files.items()})
    return matrices
