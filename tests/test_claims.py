"""The claims scorecard (reports/claims.py): the claims file is complete and well formed, and every verdict is computed
from the run's outputs: changing one input flips the verdict."""
from __future__ import annotations

import copy

import polars as pl
import pytest

from diffrepro.errors import UserError
from diffrepro.reports import claims, paper


def section(rows, columns=("sampler", "NFE", "max |Δ|")):
    return {"id": "ni_matrices", "tables": [{"id": "ni_equivalence", "columns": list(columns), "rows": rows}]}


def test_claims_file_is_complete():
    cs = claims.load_claims()
    assert len(cs) >= 40
    assert {c["paper"] for c in cs} == {"NI", "GEO", "MDM"}
    assert all(c["statement"] and c["where"] for c in cs)
    for c in cs:  # every published-table reference exists
        if c["test"]["kind"] == "rank":
            assert c["test"]["paper_table"] in paper.load_paper_numbers()


def test_bad_claims_file_is_a_user_error(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("claims:\n  - {id: X-1, paper: NI}\n")
    with pytest.raises(UserError, match="claims.yaml: claims\\[0\\] lacks"):
        claims.load_claims(bad)
    bad.write_text("claims:\n  - {id: X-1, paper: NI, where: a, statement: b, section: s, scale: huge, "
                   "test: {kind: threshold}}\n")
    with pytest.raises(UserError, match="scale must be one of"):
        claims.load_claims(bad)


def test_threshold_verdict_flips_with_its_input():
    claim = next(c for c in claims.load_claims() if c["id"] == "NI-1")
    good = [section([["ddim", 4, "2.8e-16"]])]
    bad = [section([["ddim", 4, "3e-3"]])]
    assert claims.judge(claim, good, None, {}, "smoke")["verdict"] == "reproduced"
    flipped = claims.judge(claim, bad, None, {}, "smoke")
    assert flipped["verdict"] == "not reproduced" and "0.003" in flipped["deciding"]
    assert claims.judge(claim, [], None, {}, "smoke")["verdict"] == "not testable at this scale"


def test_compare_needs_the_difference_outside_the_seed_spread():
    claim = next(c for c in claims.load_claims() if c["id"] == "MDM-1")
    cols = ["diffusion", "K", "seeds", "nats/point (no offset)", "std", "nats/point (offset)", "std", "terminal KL"]

    def mdm(learned, std, seeds=3):
        return [{"id": "mdm_toy2d", "tables": [{"id": "mdm_toy2d", "columns": cols, "rows": [
            ["VP", 1, seeds, 1.00, std, None, None, 0.01], ["Learned-2", 2, seeds, learned, std, None, None, 0.01]]}]}]

    assert claims.judge(claim, mdm(0.50, 0.01), None, {}, "default")["verdict"] == "reproduced"
    assert claims.judge(claim, mdm(1.50, 0.01), None, {}, "default")["verdict"] == "not reproduced"
    assert claims.judge(claim, mdm(0.90, 0.20), None, {}, "default")["verdict"] == "inconclusive"  # |Δ| 0.1 < 0.28
    assert claims.judge(claim, mdm(0.50, 0.01, seeds=1), None, {}, "default")["verdict"] == "inconclusive"
    assert claims.judge(claim, mdm(0.50, 0.01), None, {}, "smoke")["verdict"] == "not testable at this scale"


def sweep_agg(gits_error: float) -> pl.DataFrame:
    rows = []
    for sampler in ("euler", "ipndm"):
        for grid, err in (("edm", 0.3), ("gits", gits_error)):
            for nfe in (4, 6, 8, 10):
                rows.append({"dataset": "digits", "model": "digits", "sampler": sampler, "grid": grid, "nfe": nfe,
                             "n_seeds": 1, "traj_rmse_mean": err / nfe, "traj_rmse_std": None,
                             "fid_digits_classifier_mean": 10.0 * err / nfe, "fid_digits_classifier_std": None})
    return pl.DataFrame(rows)


def test_sweep_verdict_flips_when_the_gits_cells_get_worse():
    claim = next(c for c in claims.load_claims() if c["id"] == "GEO-18")
    better = claims.judge(claim, [], sweep_agg(0.2), {}, "default")
    worse = claims.judge(claim, [], sweep_agg(0.4), {}, "default")
    assert better["verdict"] == "reproduced" and better["deciding"].startswith("4/4")
    assert worse["verdict"] == "not reproduced" and worse["deciding"].startswith("0/4")


def test_rank_agreement_counts_cells_and_follows_the_published_order():
    papers = paper.load_paper_numbers()
    table = papers["geo/diff_solvers_cifar10"]
    rows = []
    for r in table["rows"]:  # ours = the published FID itself (ρ = 1), then reversed (ρ = −1)
        name = table["sampler_of_row"][r[0]]
        name = name[0] if isinstance(name, list) else name
        grid = claims.resolve_grid("default", name)
        for j, nfe in enumerate(table["nfe"]):
            if r[1 + j] is not None:
                rows.append({"model": "digits", "sampler": name, "grid": grid, "nfe": nfe, "n_seeds": 1,
                             "fid_digits_classifier_mean": float(r[1 + j]), "fid_digits_classifier_std": None})
    agg = pl.DataFrame(rows)
    per_nfe = claims.rank_agreement(agg, papers, "digits", "fid_digits_classifier", "geo/diff_solvers_cifar10")
    assert [n for n, _, _ in per_nfe] == table["nfe"] and all(r == pytest.approx(1.0) for _, _, r in per_nfe)
    assert dict((n, c) for n, c, _ in per_nfe)[4] == 8 and dict((n, c) for n, c, _ in per_nfe)[3] == 6
    claim = next(c for c in claims.load_claims() if c["id"] == "GEO-16")
    assert claims.judge(claim, [], agg, papers, "default")["verdict"] == "reproduced"
    reversed_agg = agg.with_columns(-pl.col("fid_digits_classifier_mean"))
    assert claims.judge(claim, [], reversed_agg, papers, "default")["verdict"] == "not reproduced"
    assert claims.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert claims.spearman([1, 2, 2, 4], [4, 3, 2, 1]) == pytest.approx(-0.9486833, rel=1e-6)


def test_scorecard_has_one_row_per_claim_and_links_present_sections():
    cs = claims.load_claims()
    secs = [section([["ddim", 4, "1e-16"]])]
    rows = claims.scorecard(cs, secs, None, {}, "smoke")
    assert [r["id"] for r in rows] == [c["id"] for c in cs]
    assert all(r["verdict"] in claims.VERDICTS and r["deciding"] for r in rows)
    assert next(r for r in rows if r["id"] == "NI-1")["section"] == "ni_matrices"
    assert next(r for r in rows if r["id"] == "MDM-1")["section"] is None  # absent section: no dead link
    sec = claims.scorecard_section(rows, "params/smoke.yaml", "smoke")
    assert len(sec["tables"][-1]["rows"]) == len(cs) and sec["order"] < 20


def test_cell_selectors():
    secs = [section([["a", 4, "1.5 ± 0.25"], ["b", 4, 3.0], ["c", 6, {"mean": 0.5, "std": 0.1}]])]
    sel = {"section": "ni_matrices", "table": "ni_equivalence", "column": "max |Δ|"}
    assert claims.cell(secs, {**sel, "row": {"sampler": "a"}}) == (1.5, 0.25)
    assert claims.cell(secs, {**sel, "row": {"sampler": "re:[ab]"}, "reduce": "max"}) == (3.0, None)
    assert claims.cell(secs, {**sel, "row": {"NFE": 6}}) == (0.5, 0.1)
    assert claims.cell(secs, {**sel, "row_index": 1}) == (3.0, None)
    assert claims.cell(secs, {**sel, "row": {"sampler": "z"}}) is None
    assert claims.cell(copy.deepcopy(secs), {**sel, "column": "nope"}) is None
