"""Aggregation and report rendering on small synthetic results (the evaluate/sample file formats of DEVELOPING.md)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from diffrepro.errors import UserError
from diffrepro.reports import SCHEMA_VERSION, paper, render, tables

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "params" / "smoke.yaml"


PROTOCOL = "diffrepro feature classifier of digits (penultimate layer); 64 samples vs test split (64 images)"


def synthetic_rows(model, dataset, sampler, nfes, seeds, shift=0.0):
    """Metric rows like the evaluate step's: quality improves with NFE; `shift` moves one sampler's numbers."""
    rows = []
    for nfe in nfes:
        for seed in seeds:
            row = {"dataset": dataset, "model": model, "sampler": sampler, "grid": "logsnr", "nfe": nfe,
                   "nfe_measured": nfe, "seed": seed, "wall_s": 0.01 * nfe, "traj_rmse": 1.0 / nfe + shift}
            if dataset == "digits":
                row |= {"fid_digits_classifier": 40.0 / nfe + shift + 0.1 * seed, "kid_digits_classifier": 0.5 / nfe,
                        "feature_space": "digits_classifier", "fid_protocol": PROTOCOL}
            else:
                row |= {"swd": 0.3 / nfe + shift + 0.01 * seed, "mmd": 0.05 / nfe, "energy": 0.1 / nfe}
            rows.append(row)
    return rows


def write_synthetic_results(root: Path, shift: dict | None = None, nfes=(4, 8, 10), seeds=(0, 1)) -> Path:
    """results/{metrics,samples,data}, benchmarks/ and one extra section under `root`; returns the results folder."""
    shift = shift or {}
    rng = np.random.default_rng(0)
    results = root / "results"
    for model, dataset in (("toy2d", "toy2d"), ("digits", "digits")):
        for sampler in ("ddim", "ddpm"):
            rows = synthetic_rows(model, dataset, sampler, nfes, seeds, shift.get(sampler, 0.0))
            (results / "metrics" / model).mkdir(parents=True, exist_ok=True)
            (results / "metrics" / model / f"{sampler}.json").write_text(json.dumps(rows))
            shape = (64, 1, 8, 8) if dataset == "digits" else (64, 2)
            cells = {f"logsnr/nfe{n}/seed{s}": np.tanh(rng.standard_normal(shape)).astype(np.float32)
                     for n in nfes for s in seeds}
            (results / "samples" / model).mkdir(parents=True, exist_ok=True)
            np.savez(results / "samples" / model / f"{sampler}.npz", **cells)
        (results / "data" / dataset).mkdir(parents=True, exist_ok=True)
        (results / "data" / dataset / "data.json").write_text(json.dumps(
            {"sha256": "ab" * 32, "N": 64, "shape": list(shape[1:]), "source": "synthetic"}))
    np.savez(results / "data" / "toy2d" / "data.npz", x_test=rng.standard_normal((128, 2)).astype(np.float32))
    bench = root / "benchmarks"
    for rule, secs in (("train", 3.5), ("sample", 1.25)):
        (bench / rule).mkdir(parents=True, exist_ok=True)
        (bench / rule / "toy2d.tsv").write_text(
            "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{secs}\t0:00:0{int(secs)}\t250.5\t900.1\t200.0\t210.0\t0.1\t0.2\t95.0\t{secs}\n")
    return results


def write_section(path: Path, figure: Path | None = None, order=20, sid="ni_test") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    section = {"id": sid, "order": order, "paper": "NI", "title": "Weighted-sum degradation & more_stuff",
               "reproduces": "NI §3.2 (Fig. 2, Table 1)", "scale": "smoke", "config": "params/smoke.yaml",
               "text": ["Mean max weight rises with *D* (computed)."],
               "tables": [{"id": "deg", "caption": "Max weight 50% & $x_t$ at σ ≈ 1 — `dpm` [≤ 2]", "columns": ["D", "t=200", "name"],
                           "rows": [[8, 0.125, "dpm_pp_2m"], [64, None, "a#b"]]}],
               "figures": [{"path": str(f), "caption": "critical t"} for f in (figure, path.parent / "missing.png") if f]}
    path.write_text(json.dumps(section))
    return path


def run_cli(*argv, cwd):
    return subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "diffrepro", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One synthetic pipeline output: aggregate + report through the real CLI."""
    root = tmp_path_factory.mktemp("report")
    results = write_synthetic_results(root)
    params = yaml.safe_load(SMOKE.read_text())
    params["report"]["appendix_rows"] = 5  # the 6-row metrics tables go to the collapsible appendix
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    fig = root / "fig.png"
    from diffrepro.reports import figures

    figures.sample_panels([("x", np.zeros((4, 2)))], fig, "extra")
    write_section(results / "ni" / "section.json", figure=fig)
    agg = run_cli("aggregate", "--params", str(SMOKE), "--metrics", "results/metrics", "--out-dir", "results/tables",
                  "--summary", "results/metrics.json", cwd=root)
    assert agg.returncode == 0, agg.stderr
    rep = run_cli("report", "--params", "params.yaml", "--results", "results", "--benchmarks", "benchmarks",
                  "--out-dir", "reports", "--sections", "results/**/section.json", "results/studies/section.json",
                  cwd=root)
    assert rep.returncode == 0, rep.stderr
    return root


def test_aggregate_means_and_flat_keys(built):
    rows = pl.read_parquet(built / "results/tables/metrics.parquet")
    assert rows.height == 2 * 2 * 3 * 2  # models x samplers x nfe x seeds
    agg = tables.read_parquet(built / "results/tables/metrics_agg.parquet", "agg")
    cell = agg.filter((pl.col("model") == "digits") & (pl.col("sampler") == "ddim") & (pl.col("nfe") == 8)).row(0, named=True)
    assert cell["n_seeds"] == 2
    assert cell["fid_digits_classifier_mean"] == pytest.approx(40.0 / 8 + 0.05)
    assert cell["fid_digits_classifier_std"] == pytest.approx(np.std([5.0, 5.1], ddof=1))
    assert cell["swd_mean"] is None
    assert cell["fid_protocol"] == PROTOCOL and cell["feature_space"] == "digits_classifier"  # text labels kept
    assert f"FID protocol of digits (`fid_digits_classifier`): {PROTOCOL}." in (built / "reports/report.md").read_text()
    flat = json.loads((built / "results/metrics.json").read_text())
    assert flat["schema_version"] == SCHEMA_VERSION
    assert flat["toy2d/ddpm/logsnr/nfe4/swd"] == pytest.approx(0.3 / 4 + 0.005)
    assert not any(k.startswith("toy2d/") and "fid" in k for k in flat)  # no null cells
    assert pl.read_csv(built / "results/tables/metrics.csv").height == rows.height


def test_report_html_is_self_contained_and_complete(built):
    html = (built / "reports/index.html").read_text()
    assert "<img" in html and not re.search(r'<img[^>]+src="(?!data:image/)', html)
    assert not re.search(r'(href|src)="https?://', html)
    # spine figures: one sample mosaic and one metric-vs-NFE figure (a panel per grid) per model
    for name in ("spine_samples_digits", "spine_samples_toy2d", "spine_nfe_digits", "spine_nfe_toy2d"):
        assert (built / "reports/figures" / f"spine__{name}.png").exists()
    # the extra section is rendered, escaped, and ordered like the papers: NI (order 20) before GEO's sampler sweep
    assert "Weighted-sum degradation &amp; more_stuff" in html
    assert html.index('id="ni_test"') < html.index('id="spine"') < html.index('id="geo_published"')
    # a value computed from the synthetic rows: digits/ddim NFE 10 FID mean = 4 + 0.05
    assert "4.05 ± 0.07071" in html
    # GEO numbers beside ours, labelled full scale, from the data file
    cifar = paper.load_paper_numbers()["geo/diff_solvers_cifar10"]
    euler10 = next(r for r in cifar["rows"] if r[0] == "Euler")[-1]
    assert f"{euler10:.4g}" in html and "full scale" in html
    # missing optional inputs are notes, not crashes
    assert "results/studies/section.json was not produced" in html
    # provenance
    assert "250.5" in html and "4.75" in html  # peak RSS and total job seconds from the benchmark TSVs
    assert "ab" * 8 in html  # dataset hash prefix


def test_report_markdown_links_figures(built):
    md = (built / "reports/report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all((built / "reports" / link).exists() for link in links)
    assert "| ddim | logsnr | 10 | 10 | 2 | 4.05 ± 0.07071 |" in md
    assert "Figure " in md and "missing.png was not produced" in md


def check_tex_syntax(text: str) -> None:
    body = text[text.index(r"\begin{tabular}"):text.index(r"\end{tabular}")]
    spec = re.match(r"\\begin\{tabular\}\{([lrc]+)\}", body).group(1)
    assert text.count("{") - text.count(r"\{") == text.count("}") - text.count(r"\}")
    rows = [line for line in body.splitlines()[1:] if line.endswith(r"\\")]
    assert rows
    for line in rows:
        unescaped = re.sub(r"\\[&%$#_{}]", "", line)
        assert unescaped.count("&") == len(spec) - 1, line
        assert not re.search(r"(?<!\\)[%#_]", re.sub(r"\\[a-z]+\{?", "", line)), line


def test_latex_fragments(built, tmp_path):
    frags = sorted((built / "reports/tables").glob("*.tex"))
    names = {f.name for f in frags}
    assert {"spine__metrics_digits.tex", "ni_test__deg.tex", "geo_published__geo_diff_solvers_cifar10.tex"} <= names
    special = (built / "reports/tables/ni_test__deg.tex").read_text()
    assert r"50\% \& \$x\_t\$" in special and r"dpm\_pp\_2m" in special and r"a\#b" in special
    for f in frags:
        check_tex_syntax(f.read_text())
    engine = shutil.which("pdflatex") or shutil.which("lualatex") or shutil.which("xelatex")
    if engine:  # compile every fragment with a minimal preamble
        doc = tmp_path / "doc.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[utf8]{inputenc}\n"
                       "\\begin{document}\n" + "".join(f"\\input{{{f}}}\n\\clearpage\n" for f in frags) +
                       "\\end{document}\n")
        out = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                             capture_output=True, encoding="utf-8", errors="replace", timeout=120)  # TeX logs 8-bit
        assert out.returncode == 0, out.stdout[-2000:]


def test_tex_escape_and_cells():
    assert render.tex_escape("a_b & 50% {x} ~ ^ \\") == r"a\_b \& 50\% \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"
    assert render.cell_text({"mean": 1.234567, "std": None}, "md") == "1.235"
    assert render.cell_text({"mean": 2.0, "std": 0.5}, "tex") == r"2 $\pm$ 0.5"
    assert render.cell_text(None, "tex") == "--" and render.cell_text("a|b", "md") == r"a\|b"


def test_missing_required_inputs_name_the_file(tmp_path):
    out = run_cli("report", "--params", str(SMOKE), "--results", "results", "--out-dir", "reports", cwd=tmp_path)
    assert out.returncode == 2 and "results/tables/metrics_agg.parquet" in out.stderr
    assert not (tmp_path / "reports" / "index.html").exists()
    out = run_cli("aggregate", "--params", str(SMOKE), "--metrics", "nowhere", cwd=tmp_path)
    assert out.returncode == 2 and "nowhere" in out.stderr


def test_malformed_inputs_raise_user_error(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps([{"model": "x"}]))
    with pytest.raises(UserError, match="m.json: row 0 lacks"):
        tables.read_metric_rows([bad])
    from diffrepro.reports import sections

    sec = tmp_path / "section.json"
    sec.write_text(json.dumps({"id": "x", "order": 1}))
    with pytest.raises(UserError, match="section.json: section lacks"):
        sections.load_sections([str(sec)], {})
    sec.write_text(json.dumps({"id": "x", "order": 1, "title": "t", "reproduces": "r", "scale": "s", "config": "c",
                               "tables": [{"id": "p", "caption": "c", "source": "paper", "paper_table": "geo/nope"}]}))
    with pytest.raises(UserError, match="geo/nope"):
        sections.load_sections([str(sec)], paper.load_paper_numbers())


def test_schema_version_mismatch(tmp_path):
    df = pl.DataFrame({"a": [1]})
    df.write_parquet(tmp_path / "old.parquet", metadata={tables.SCHEMA_KEY: "0"})
    with pytest.raises(UserError, match="rev-x.*schema version '0'"):
        tables.read_parquet((tmp_path / "old.parquet").read_bytes(), "rev-x")


def test_paper_numbers_file_is_complete():
    papers = paper.load_paper_numbers()
    assert any(k.startswith("geo/") for k in papers)
    for key, t in papers.items():
        assert t["scale"].startswith("full scale") and t["citation"] and t["where"] and t["version"], key
    raw = yaml.safe_load(paper.PAPER_NUMBERS.read_text())
    assert raw["schema_version"] == 1
    ours = {("ddim", 8): {"mean": 1.0, "std": None}, ("ddim", 7): {"mean": 2.0, "std": None},
            ("nosuch", 8): {"mean": 3.0, "std": None}}
    rows = paper.beside_ours(ours, papers["geo/diff_solvers_cifar10"])
    assert rows == [["ddim", 7, {"mean": 2.0, "std": None}, 27.93], ["ddim", 8, {"mean": 1.0, "std": None}, 22.32]]


def test_sample_cells_fall_back_to_what_the_file_holds():
    from diffrepro.reports.spine import choose_cells

    keys = ["logsnr/nfe4/seed0", "logsnr/nfe8/seed0", "logsnr/nfe10/seed0", "gits/nfe4/seed0"]
    assert choose_cells(keys, ["logsnr", "gits"], [4, 10], [0]) == ("logsnr", [4, 10], 0)
    assert choose_cells(["quadratic_t/nfe6/seed1"], ["logsnr"], [4, 10], [0]) == ("quadratic_t", [6], 1)
    assert choose_cells(["x_train"], ["logsnr"], [4], [0]) is None


def test_spine_text_names_the_feature_space_of_each_fid_column():
    from diffrepro.reports.spine import feature_space_text

    agg = pl.DataFrame({"feature_space": ["inception_ts", "fashion_classifier", None, "inception_ts"]})
    text = feature_space_text(agg)
    assert "`fid_inception_ts`: Inception-v3 pool3 features (TF FID graph)" in text and text.count("inception_ts") == 1
    assert "`fid_fashion_classifier`: our own fashion classifier's penultimate features (not Inception)" in text
    assert feature_space_text(pl.DataFrame({"feature_space": [None]}, schema={"feature_space": pl.Utf8})) == ""
    assert feature_space_text(pl.DataFrame({"traj_rmse": [0.1]})) == ""  # vector data only: no feature space


def test_within_cell_std_is_not_a_metric(tmp_path):
    f = tmp_path / "m.json"
    rows = synthetic_rows("digits", "digits", "ddim", (4,), (0, 1))
    f.write_text(json.dumps([r | {"kid_digits_classifier_std": 0.3} for r in rows]))
    df = tables.read_metric_rows([f])
    assert "kid_digits_classifier_std" in df.columns
    assert "kid_digits_classifier_std" not in tables.metric_columns(df)
    assert not any("_std/" in k or k.endswith("_std") for k in tables.flat_metrics(tables.aggregate(df)))


def test_published_rows_sit_beside_ours_on_the_grid_the_paper_ran():
    """GITS rows match our gits cells, default rows the recommended grid, NI rows the time-quadratic grid; a model
    built from the paper's own network file is named so in the caption."""
    from diffrepro.reports import spine

    papers = paper.load_paper_numbers()
    cells = [("edm_net", "ipndm", "edm", 5, 9.0), ("edm_net", "ipndm", "gits", 5, 7.0),
             ("edm_net", "ipndm", "logsnr", 5, 99.0), ("nat", "deis", "quadratic_t", 10, 4.2),
             ("nat", "deis", "time_uniform", 10, 5.0), ("nat", "dpmpp2m", "quadratic_t", 5, 12.0)]
    agg = pl.DataFrame({"model": [c[0] for c in cells], "sampler": [c[1] for c in cells],
                        "grid": [c[2] for c in cells], "nfe": [c[3] for c in cells], "n_seeds": [1] * len(cells),
                        "fid_inception_ts_mean": [c[4] for c in cells], "fid_inception_ts_std": [None] * len(cells)})
    cfg = {"sampling": {"models": ["edm_net", "nat"]}, "report": {"scale": "paper"},
           "models": {"edm_net": {"source": {"kind": "edm", "path": "x/edm-cifar10-32x32-uncond-vp.pkl"}},
                      "nat": {"source": {"kind": "edm", "path": "baseline-cifar10-32x32-uncond-vp.pkl"}}}}
    geo = spine.paper_section(cfg, agg, papers, "params/paper.yaml")
    gits = next(t for t in geo["tables"] if t["id"] == "beside_edm_net_geo_gits_cifar10")
    assert gits["rows"] == [["ipndm", 5, {"mean": 9.0, "std": None}, 13.59],
                            ["ipndm (gits)", 5, {"mean": 7.0, "std": None}, 8.38]]
    assert "the paper's own network" in gits["caption"]
    ni = spine.ni_paper_section(cfg, agg, papers, "params/paper.yaml")
    rows = next(t for t in ni["tables"] if t["id"] == "beside_nat_ni_cifar10_baselines")["rows"]
    assert rows == [["deis (quadratic_t)", 10, {"mean": 4.2, "std": None}, 4.40],
                    ["dpmpp2m (quadratic_t)", 5, {"mean": 12.0, "std": None}, 11.51]]
    assert spine.ni_paper_section(cfg, agg.filter(pl.col("model") == "edm_net"), papers, "p") is None


def test_report_opens_with_scorecard_setup_and_contents(built):
    from diffrepro.reports import claims

    html = (built / "reports/index.html").read_text()
    md = (built / "reports/report.md").read_text()
    ids = [c["id"] for c in claims.load_claims()]
    assert all(f">{i}<" in html and f"| {i} |" in md for i in ids)  # every claim, in both formats
    assert html.index('id="setup"') < html.index('id="scorecard"') < html.index('id="ni_test"')
    assert "## Contents" in md and "- [Claims scorecard](#scorecard)" in md and '<a id="scorecard"></a>' in md
    assert "Limitations:" in md and "Times: t ∈ [0, 1]" in md
    for cite in ("arXiv:2503.08643", "arXiv:2305.19947", "arXiv:2405.11326", "arXiv:2302.07261"):
        assert cite in html and cite in md
    # long tables (6 rows > appendix_rows 5) are in a collapsible appendix, linked from their section
    assert '<section id="appendix">' in html and "<details" in html and "<summary>" in html
    assert html.index('<section id="appendix">') < html.index('id="appendix-spine-metrics_digits"') \
        < html.index('<section id="references">')
    assert "## Appendix: long tables" in md and "(#appendix-spine-metrics_digits)" in md
    # the sampler × NFE pivot marks the best value of each column in bold
    assert re.search(r"<b>\d", html) and re.search(r"\| \*\*\d", md)


def test_rendered_report_refers_to_no_file_outside_the_repository(built):
    for name in ("index.html", "report.md"):
        text = (built / "reports" / name).read_text()
        for needle in (r"\bspec ", r"research/", r"\.\./shared"):
            assert not re.search(needle, text), (name, needle, re.search(f".{{80}}{needle}.{{40}}", text))


def test_data_files_cite_no_outside_files():
    """The published-numbers and claims files feed captions and the scorecard verbatim."""
    from diffrepro.reports import claims

    for path in (paper.PAPER_NUMBERS, claims.CLAIMS_FILE):
        assert not re.search(r"\bspec |research/|\.\./shared", path.read_text()), path.name
