"""Reliability: every bad input is a clear refusal, never a traceback, a silent wrong result or a partial output.

- PARAMS_CASES: params files made from params/smoke.yaml with one change each; `diffrepro validate` must exit 2 with
  a message naming the cause, no traceback, and create or change no file.
- CLI_CASES: bad inputs and faults for the steps themselves (corrupt, truncated, flipped or mismatched artifacts, bad
  output names, non-finite training); same assertions, on a small workspace trained once per module.
- The config race (a dry run of another params file during a run) and a flipped byte in model.pt under Snakemake.
Cases run in-process through `diffrepro.cli.main` (one torch import for the whole table).
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, copy_worktree, run_env

SMOKE = yaml.safe_load((ROOT / "params/smoke.yaml").read_text())


def _set(cfg: dict, dotted: str, value):
    """cfg with `dotted` (a.b[2].c) set to value; a value of DELETE removes the key."""
    node, parts = cfg, dotted.replace("]", "").replace("[", ".").split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    last = parts[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return cfg


DELETE = object()
NAN, INF = float("nan"), float("inf")

# (id, {dotted key: new value}, text the message must contain)
PARAMS_CASES = [
    # non-finite numbers anywhere
    ("lr_nan", {"models.toy2d.train.lr": NAN}, "models.toy2d.train.lr"),
    ("lr_inf", {"models.toy2d.train.lr": INF}, "models.toy2d.train.lr"),
    ("lr_neg_inf", {"models.digits.train.lr": -INF}, "models.digits.train.lr"),
    ("ema_nan", {"models.toy2d.train.ema_decay": NAN}, "ema_decay"),
    ("beta0_inf", {"models.toy2d.schedule.beta0": INF}, "models.toy2d.schedule.beta0"),
    ("eta_nan", {"sampling.sampler_options.ddim.eta": NAN}, "sampling.sampler_options.ddim.eta"),
    ("classifier_lr_nan", {"classifier.digits.lr": NAN}, "classifier.digits.lr"),
    ("mdm_lr_inf", {"mdm.studies.toy2d.train.lr": INF}, "mdm.studies.toy2d.train.lr"),
    ("degradation_t_nan", {"studies.degradation.trained.t": [0.2, NAN]}, "studies.degradation.trained.t[1]"),
    ("gits_coeff_inf", {"sampling.grid_options.gits.coeff": INF}, "sampling.grid_options.gits.coeff"),
    ("edm_rho_nan", {"sampling.grid_options.edm": {"rho": NAN}}, "sampling.grid_options.edm.rho"),
    # absurd sizes
    ("nfe_1e9", {"sampling.nfe": [4, 1_000_000_000]}, "sampling.nfe[1]"),
    ("n_samples_1e12", {"sampling.n_samples": 10**12}, "sampling.n_samples"),
    ("batch_1e9", {"sampling.batch_size": 10**9}, "sampling.batch_size"),
    ("reference_steps_1e7", {"sampling.reference.steps": 10**7}, "sampling.reference.steps"),
    ("train_steps_1e10", {"models.toy2d.train.steps": 10**10}, "models.toy2d.train.steps"),
    ("ni_nfe_1e6", {"ni.matrices.nfe": [10**6]}, "ni.matrices.nfe[0]"),
    ("mdm_sample_steps_1e7", {"mdm.studies.toy2d.eval.sample_steps": 10**7}, "sample_steps"),
    ("teacher_steps_1e6", {"sampling.grid_options.gits.teacher_steps": 10**6}, "teacher_steps"),
    ("sample_memory", {"datasets.digits.image_size": 32, "sampling.n_samples": 9_999_999, "sampling.grids": [
        "logsnr", "edm"], "sampling.nfe": [4, 8, 10, 12, 16, 20, 24, 32]}, "GiB of samples"),
    ("per_model_n_samples_1e9", {"sampling.per_model": {"toy2d": {"n_samples": 10**9}}}, "n_samples"),
    # cross-references
    ("model_dataset_dangling", {"models.toy2d.dataset": "nope"}, "models.toy2d.dataset"),
    ("sampling_model_dangling", {"sampling.models": ["toy2d", "nope"]}, "sampling.models[1]"),
    ("classifier_dataset_dangling", {"classifier.nope": {"steps": 10}}, "classifier.nope"),
    ("feature_extractor_dangling", {"metrics.feature_extractor.nope": "classifier"}, "metrics.feature_extractor.nope"),
    ("mdm_study_dangling", {"mdm.studies.nope": copy.deepcopy(SMOKE["mdm"]["studies"]["toy2d"])}, "mdm.studies.nope"),
    ("per_model_dangling", {"sampling.per_model": {"nope": {"n_samples": 8}}}, "sampling.per_model.nope"),
    ("degradation_model_dangling", {"studies.degradation.trained.model": "nope"}, "studies.degradation.trained.model"),
    ("degradation_set_dataset", {"studies.degradation.sets[1].dataset": "nope"}, "studies.degradation.sets[1].dataset"),
    ("geometry_model_dangling", {"studies.geometry.model": "nope"}, "studies.geometry.model"),
    ("ni_search_model_dangling", {"ni.search.models": ["toy2d", "nope"]}, "ni.search.models[1]"),
    ("ni_sharp_model_dangling", {"ni.sharpness.models": ["nope"]}, "ni.sharpness.models[0]"),
    ("ni_cfg_model_dangling", {"ni.cfg.model": "nope"}, "ni.cfg.model"),
    ("ni_cfg_tuned_dangling", {"ni.cfg.tuned_from": "nope"}, "ni.cfg.tuned_from"),
    ("ni_cfg_unconditional", {"ni.cfg.model": "digits"}, "not class-conditional"),
    ("ni_n_train_dangling", {"ni.search.n_train_per_model": {"nope": 4}}, "ni.search.n_train_per_model.nope"),
    # sampler and grid options against the functions
    ("ddim_bogus_option", {"sampling.sampler_options.ddim.bogus": 1}, "sampling.sampler_options.ddim.bogus"),
    ("heun_eta", {"sampling.sampler_options.heun": {"eta": 0.5}}, "sampling.sampler_options.heun.eta"),
    ("options_unknown_sampler", {"sampling.sampler_options.nope": {}}, "sampling.sampler_options.nope"),
    ("gits_bogus_option", {"sampling.grid_options.gits.bogus": 1}, "sampling.grid_options.gits.bogus"),
    ("grid_options_unknown_grid", {"sampling.grid_options.nope": {"rho": 7}}, "sampling.grid_options.nope"),
    ("logsnr_rho", {"sampling.grid_options.logsnr": {"rho": 7}}, "sampling.grid_options.logsnr.rho"),
    ("per_model_grid_option", {"sampling.per_model": {"toy2d": {"grid_options": {"edm": {"bogus": 1}}}}},
     "sampling.per_model.toy2d.grid_options.edm.bogus"),
    ("ni_matrix_sampler", {"ni.matrices.samplers": ["ddim", "nope"]}, "nope"),
    ("ni_baseline_sampler", {"ni.search.baselines": ["nope"]}, "nope"),
    # NFE per sampler
    ("heun_odd_nfe", {"sampling.samplers": ["heun"], "sampling.nfe": [3, 5]}, "heun"),
    ("dpm3_nfe", {"sampling.samplers": ["ddim", "dpm3"], "sampling.nfe": [4, 8, 10]}, "dpm3"),
    ("per_model_odd_nfe", {"sampling.samplers": ["heun"], "sampling.nfe": [4],
                           "sampling.per_model": {"toy2d": {"nfe": [3]}}}, "sampling.per_model.toy2d.nfe"),
    ("gits_teacher_too_small", {"sampling.grid_options.gits.teacher_steps": 6}, "teacher_steps"),
    # schema: keys, types, ranges, enums
    ("unknown_top_key", {"bogus": 1}, "bogus"),
    ("unknown_nested_key", {"models.toy2d.train.bogus": 1}, "bogus"),
    ("lr_string", {"models.toy2d.train.lr": "fast"}, "models.toy2d.train.lr"),
    ("seed_negative", {"seed": -1}, "seed"),
    ("nfe_string", {"sampling.nfe": "ten"}, "sampling.nfe"),
    ("n_samples_one", {"sampling.n_samples": 1}, "sampling.n_samples"),
    ("dataset_kind", {"datasets.toy2d.kind": "imagenet"}, "datasets.toy2d.kind"),
    ("arch_unknown", {"models.toy2d.arch": "transformer"}, "models.toy2d.arch"),
    ("parameterisation_unknown", {"models.toy2d.parameterisation": "score"}, "parameterisation"),
    ("schedule_unknown", {"models.toy2d.schedule.name": "sigmoid"}, "models.toy2d.schedule.name"),
    ("sampling_missing", {"sampling": DELETE}, "sampling"),
    ("grid_unknown", {"sampling.grids": ["logsnr", "nope"]}, "sampling.grids"),
    ("sampler_unknown", {"sampling.samplers": ["ddim", "nope"]}, "sampling.samplers"),
    ("device_unknown", {"runtime.device": "tpu"}, "runtime.device"),
    ("models_empty", {"models": {}}, "models"),
    ("ema_above_one", {"models.toy2d.train.ema_decay": 1.5}, "ema_decay"),
]

# (id, raw file content or a maker(tmp) -> path, text the message must contain)
RAW_CASES = [
    ("duplicate_top_key", "seed: 0\nseed: 1\n", "duplicate key 'seed'"),
    ("duplicate_nested_key", None, "duplicate key 'lr'"),
    ("non_utf8", b"seed: 0\n# caf\xe9\n", "not UTF-8"),
    ("syntax_error", "seed: [0\n", "not valid YAML"),
    ("top_level_list", "- 1\n- 2\n", "mapping at the top level"),
    ("empty_file", "", "mapping at the top level"),
    ("directory", "DIR", "not a regular file"),
    ("missing_file", "MISSING", "not found"),
]


def _snapshot(*roots: Path) -> dict:
    out = {}
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = Path(dirpath) / f
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _run_cli(argv, capsys, cwd: Path | None = None):
    from diffrepro.cli import main

    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    start = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    finally:
        os.chdir(old)
    captured = capsys.readouterr()
    return code, captured.err, time.perf_counter() - start


def _assert_refused(code, err, needle, label):
    assert code not in (0, None), f"{label}: exit {code}, stderr: {err}"
    assert needle in err, f"{label}: message does not name '{needle}': {err}"
    assert "Traceback" not in err, f"{label}: {err}"
    assert len(err.strip().splitlines()) <= 2, f"{label}: not one line: {err}"


@pytest.mark.parametrize("case_id,changes,needle", PARAMS_CASES, ids=[c[0] for c in PARAMS_CASES])
def test_bad_params_refused(tmp_path, capsys, case_id, changes, needle):
    cfg = copy.deepcopy(SMOKE)
    for key, value in changes.items():
        _set(cfg, key, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    before = _snapshot(tmp_path, ROOT / "params", ROOT / ".snakemake" / "diffrepro")
    code, err, seconds = _run_cli(["validate", "--params", str(bad), "--quiet"], capsys)
    _assert_refused(code, err, needle, case_id)
    assert _snapshot(tmp_path, ROOT / "params", ROOT / ".snakemake" / "diffrepro") == before
    print(f"{case_id}: refused in {seconds:.3f} s")  # timing is reported, not asserted (docs/DEVELOPING.md)


@pytest.mark.parametrize("case_id,content,needle", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_bad_params_files_refused(tmp_path, capsys, case_id, content, needle):
    bad = tmp_path / "bad.yaml"
    if content == "DIR":
        bad.mkdir()
    elif content == "MISSING":
        pass
    elif content is None:  # duplicate inside a nested mapping of the smoke file
        text = (ROOT / "params/smoke.yaml").read_text()
        bad.write_text(text.replace("lr: 2.0e-3, ema_decay", "lr: 2.0e-3, lr: 1.0e-3, ema_decay", 1))
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    before = _snapshot(tmp_path)
    code, err, _ = _run_cli(["validate", "--params", str(bad), "--quiet"], capsys)
    _assert_refused(code, err, needle, case_id)
    assert _snapshot(tmp_path) == before


def test_snakemake_refuses_at_parse_time(tmp_path):
    """The Snakefile runs the same checks: an NFE list giving heun 0 cells stops the dry run with one line, before
    any params copy is written."""
    cfg = copy.deepcopy(SMOKE)
    for key, value in {"sampling.samplers": ["heun"], "sampling.nfe": [3, 5]}.items():
        _set(cfg, key, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    before = _snapshot(ROOT / ".snakemake" / "diffrepro")
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, env=run_env(), timeout=300)
    assert r.returncode != 0
    assert "sampling.nfe" in r.stderr and "heun" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _snapshot(ROOT / ".snakemake" / "diffrepro") == before


def test_validate_subprocess_is_fast(tmp_path):
    """A fresh `diffrepro validate` of a bad file answers without importing torch (the < 2 s budget per case)."""
    cfg = _set(copy.deepcopy(SMOKE), "models.toy2d.train.lr", NAN)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    probe = ("import sys, diffrepro.cli as c; code = c.main(['validate', '--params', sys.argv[1], '--quiet']); "
             "assert 'torch' not in sys.modules; sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", probe, str(bad)], capture_output=True, text=True, env=run_env(),
                       timeout=60)
    assert r.returncode == 2 and "models.toy2d.train.lr" in r.stderr, r.stderr


# --- CLI steps on a small trained workspace ----------------------------------------------------------------------
def _tiny_params() -> dict:
    cfg = copy.deepcopy(SMOKE)
    cfg["models"]["toy2d"]["train"].update(steps=20, checkpoint_every=10)
    cfg["sampling"].update(models=["toy2d"], samplers=["ddim"], grids=["logsnr"], nfe=[4], n_samples=64,
                           reference={"solver": "heun", "steps": 8})
    cfg["sampling"].pop("grid_options")
    return cfg


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """prepare → train → sample → reference → reference-stats → evaluate for toy2d, in-process."""
    from diffrepro.cli import main

    ws = tmp_path_factory.mktemp("reliability")
    (ws / "params.yaml").write_text(yaml.safe_dump(_tiny_params()))
    p = str(ws / "params.yaml")
    steps = [
        ["prepare", "--params", p, "--dataset", "toy2d", "--out-dir", f"{ws}/data"],
        ["train", "--params", p, "--model", "toy2d", "--data", f"{ws}/data/data.npz", "--out-dir", f"{ws}/model",
         "--threads", "1", "--no-progress"],
        ["sample", "--params", p, "--model", "toy2d", "--sampler", "ddim", "--checkpoint", f"{ws}/model/model.pt",
         "--out", f"{ws}/samples/ddim.npz", "--threads", "1", "--no-progress"],
        ["sample", "--params", p, "--model", "toy2d", "--reference", "--checkpoint", f"{ws}/model/model.pt",
         "--out", f"{ws}/samples/_reference.npz", "--threads", "1", "--no-progress"],
        ["reference-stats", "--params", p, "--dataset", "toy2d", "--data", f"{ws}/data/data.npz",
         "--out", f"{ws}/refstats.pt", "--threads", "1"],
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    return ws


def _evaluate(ws, samples=None, reference=None, refstats=None, out=None, params=None):
    return ["evaluate", "--params", params or f"{ws}/params.yaml", "--model", "toy2d", "--sampler", "ddim",
            "--samples", samples or f"{ws}/samples/ddim.npz", "--reference", reference or f"{ws}/samples/_reference.npz",
            "--refstats", refstats or f"{ws}/refstats.pt", "--out", out or f"{ws}/out/metrics.json", "--threads", "1"]


def _sample(ws, checkpoint=None, out=None, model="toy2d", params=None, sampler="ddim"):
    return ["sample", "--params", params or f"{ws}/params.yaml", "--model", model, "--sampler", sampler,
            "--checkpoint", checkpoint or f"{ws}/model/model.pt", "--out", out or f"{ws}/out/s.npz",
            "--threads", "1", "--no-progress"]


def _train(ws, data=None, params=None, model="toy2d"):
    return ["train", "--params", params or f"{ws}/params.yaml", "--model", model, "--data",
            data or f"{ws}/data/data.npz", "--out-dir", f"{ws}/out/model", "--threads", "1", "--no-progress"]


def _with_manifest(src: Path, dest: Path) -> None:
    """Sample files travel with their manifest (S.json beside S.npz)."""
    if src.suffix == ".npz" and src.with_suffix(".json").is_file():
        dest.with_suffix(".json").write_text(src.with_suffix(".json").read_text())


def _truncated(ws, src, name):
    data = Path(src).read_bytes()
    dest = ws / "bad" / name
    dest.parent.mkdir(exist_ok=True)
    dest.write_bytes(data[: len(data) // 2])
    _with_manifest(Path(src), dest)
    return str(dest)


def _flipped(ws, src, name, copy_sidecar=True):
    """A copy of `src` (and its sidecar) with one byte flipped in the middle; size and mtime kept."""
    src = Path(src)
    dest = ws / "bad" / name
    dest.parent.mkdir(exist_ok=True)
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    dest.write_bytes(bytes(data))
    st = src.stat()
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    if copy_sidecar:
        (dest.parent / (dest.name + ".prov.json")).write_text((src.parent / (src.name + ".prov.json")).read_text())
    _with_manifest(src, dest)
    return str(dest)


def _npz(ws, name, **arrays):
    dest = ws / "bad" / name
    dest.parent.mkdir(exist_ok=True)
    np.savez(dest, **arrays)
    return str(dest)


def _data_variant(ws, name, **changes):
    with np.load(ws / "data" / "data.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v(arrays[k]) if callable(v) else v
    return _npz(ws, name, **arrays)


def _torch_variant(ws, src, name, edit):
    import torch

    blob = torch.load(src, weights_only=True)
    edit(blob)
    dest = ws / "bad" / name
    dest.parent.mkdir(exist_ok=True)
    torch.save(blob, dest)
    return str(dest)


def _make_conditional(blob):
    """A genuine class-conditional network of the same architecture (8 classes)."""
    from diffrepro.models import build_model

    spec = {**blob["spec"], "class_conditional": True}
    blob.update(spec=spec, num_classes=8, state_dict=build_model(spec, blob["data_shape"], 8).state_dict())


def _nan_weight(blob):
    key = next(iter(blob["state_dict"]))
    blob["state_dict"][key] = blob["state_dict"][key] * float("nan")


def _params_variant(ws, name, dotted, value):
    cfg = _set(yaml.safe_load((ws / "params.yaml").read_text()), dotted, value)
    dest = ws / "bad" / name
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(yaml.safe_dump(cfg))
    return str(dest)


def _edited_resolved(ws):
    """A content-addressed params copy edited after it was written (its name no longer matches its content)."""
    from diffrepro.config import write_resolved_params

    path = write_resolved_params((ws / "params.yaml").read_text(), ws / "bad" / "resolved")
    path.write_text(path.read_text().replace("seed: 0", "seed: 1"))
    return str(path)


# (id, argv maker(ws) -> argv, text the message must contain)
CLI_CASES = [
    ("sample_out_without_npz", lambda ws: _sample(ws, out=f"{ws}/out/samples"), "must end in .npz"),
    ("sample_out_txt", lambda ws: _sample(ws, out=f"{ws}/out/samples.txt"), "must end in .npz"),
    ("sample_flipped_model", lambda ws: _sample(ws, checkpoint=_flipped(ws, f"{ws}/model/model.pt", "f.pt")),
     "does not match the sha256"),
    ("sample_truncated_model", lambda ws: _sample(ws, checkpoint=_truncated(ws, f"{ws}/model/model.pt", "t.pt")),
     "corrupt"),
    ("sample_conditional_ckpt", lambda ws: _sample(ws, checkpoint=_torch_variant(
        ws, f"{ws}/model/model.pt", "cond.pt", _make_conditional)), "class_conditional"),
    ("sample_nan_weights", lambda ws: _sample(ws, checkpoint=_torch_variant(
        ws, f"{ws}/model/model.pt", "nanw.pt", _nan_weight)), "NaN"),
    ("sample_other_model_ckpt", lambda ws: _sample(ws, model="digits"), "dataset"),
    ("sample_dir_ckpt", lambda ws: _sample(ws, checkpoint=f"{ws}/model"), "not a file"),
    ("sample_missing_ckpt", lambda ws: _sample(ws, checkpoint=f"{ws}/nope.pt"), "missing"),
    ("sample_unknown_sampler", lambda ws: _sample(ws, sampler="nope"), "nope"),
    ("sample_unknown_model", lambda ws: _sample(ws, model="nope"), "nope"),
    ("sample_edited_resolved_params", lambda ws: _sample(ws, params=_edited_resolved(ws)), "was changed after"),
    ("evaluate_truncated_samples", lambda ws: _evaluate(ws, samples=_truncated(ws, f"{ws}/samples/ddim.npz",
                                                                              "ddim.npz")), "corrupt"),
    ("evaluate_truncated_reference", lambda ws: _evaluate(ws, reference=_truncated(
        ws, f"{ws}/samples/_reference.npz", "ref.npz")), "corrupt"),
    ("evaluate_flipped_samples", lambda ws: _evaluate(ws, samples=_flipped(ws, f"{ws}/samples/ddim.npz",
                                                                            "ddim.npz")), "sha256"),
    ("evaluate_truncated_refstats", lambda ws: _evaluate(ws, refstats=_truncated(ws, f"{ws}/refstats.pt",
                                                                                "rs.pt")), "corrupt"),
    ("evaluate_flipped_refstats", lambda ws: _evaluate(ws, refstats=_flipped(ws, f"{ws}/refstats.pt", "rs.pt")),
     "sha256"),
    ("evaluate_model_as_refstats", lambda ws: _evaluate(ws, refstats=f"{ws}/model/model.pt"), "model.pt"),
    ("evaluate_missing_samples", lambda ws: _evaluate(ws, samples=f"{ws}/nope.npz"), "nope"),
    ("evaluate_nan_reference", lambda ws: _evaluate(ws, reference=_npz(ws, "nanref.npz", seed0=np.full((64, 2), np.nan,
                                                                                                 np.float32))),
     "NaN"),
    ("train_truncated_data", lambda ws: _train(ws, data=_truncated(ws, f"{ws}/data/data.npz", "data.npz")), "corrupt"),
    ("train_flipped_data", lambda ws: _train(ws, data=_flipped(ws, f"{ws}/data/data.npz", "data.npz")), "sha256"),
    ("train_nan_data", lambda ws: _train(ws, data=_data_variant(ws, "nan.npz", x_train=lambda x: x * np.nan)), "NaN"),
    ("train_3d_data", lambda ws: _train(ws, data=_data_variant(
        ws, "d3.npz", x_train=lambda x: np.concatenate([x, x[:, :1]], 1),
        x_test=lambda x: np.concatenate([x, x[:, :1]], 1))), "3 numbers"),
    ("train_missing_labels", lambda ws: _train(ws, data=_data_variant(ws, "noy.npz", y_train=None)), "y_train"),
    ("train_integer_x", lambda ws: _train(ws, data=_data_variant(ws, "int.npz", x_train=lambda x: x.astype(np.int64))),
     "float"),
    ("train_params_lr_inf", lambda ws: _train(ws, params=_params_variant(ws, "lrinf.yaml", "models.toy2d.train.lr",
                                                                        INF)), "models.toy2d.train.lr"),
    ("train_diverging_loss", lambda ws: _train(ws, params=_params_variant(ws, "lr_huge.yaml", "models.toy2d.train.lr",
                                                                         1e30)), "loss became"),
    ("train_params_dir", lambda ws: _train(ws, params=str(ws / "data")), "not a regular file"),
    ("train_unknown_model", lambda ws: _train(ws, model="nope"), "nope"),
    ("reference_stats_truncated_data", lambda ws: [
        "reference-stats", "--params", f"{ws}/params.yaml", "--dataset", "toy2d", "--data",
        _truncated(ws, f"{ws}/data/data.npz", "rsdata.npz"), "--out", f"{ws}/out/rs.pt"], "corrupt"),
    ("train_classifier_truncated_data", lambda ws: [
        "train-classifier", "--params", f"{ws}/params.yaml", "--dataset", "digits", "--data",
        _truncated(ws, f"{ws}/data/data.npz", "clfdata.npz"), "--out", f"{ws}/out/clf.pt"], "corrupt"),
    ("mdm_train_truncated_data", lambda ws: [
        "mdm", "train", "--params", f"{ws}/params.yaml", "--dataset", "toy2d", "--diffusion", "vp", "--seed", "0",
        "--data", _truncated(ws, f"{ws}/data/data.npz", "mdmdata.npz"), "--out", f"{ws}/out/mdm/model.pt"], "corrupt"),
    ("prepare_unknown_dataset", lambda ws: ["prepare", "--params", f"{ws}/params.yaml", "--dataset", "nope",
                                            "--out-dir", f"{ws}/out/data"], "nope"),
]


@pytest.mark.parametrize("case_id,make_argv,needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_cli_inputs_refused(workspace, capsys, case_id, make_argv, needle):
    argv = make_argv(workspace)
    before = _snapshot(workspace)
    code, err, _ = _run_cli(argv, capsys)
    _assert_refused(code, err, needle, case_id)
    after = _snapshot(workspace)
    assert after == before, f"{case_id}: files changed: {sorted(set(after.items()) ^ set(before.items()))}"


def test_evaluate_writes_strict_json(workspace, capsys):
    """A diverged cell (inf samples) is scored and written as null, never as a bare NaN/Infinity."""
    with np.load(workspace / "samples" / "ddim.npz") as z:
        arrays = {k: z[k] for k in z.files}
    key = next(iter(arrays))
    arrays[key] = np.full_like(arrays[key], np.inf)
    bad = _npz(workspace, "inf_samples.npz", **arrays)
    (Path(bad).with_suffix(".json")).write_text((workspace / "samples" / "ddim.json").read_text())
    out = workspace / "out2" / "metrics.json"
    code, err, _ = _run_cli(_evaluate(workspace, samples=bad, out=str(out)), capsys)
    if code == 0:
        text = out.read_text()
        json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in {out}"))
    else:
        _assert_refused(code, err, "inf_samples.npz", "evaluate_inf_samples")
        assert not out.exists()


def test_outputs_all_or_nothing_on_a_full_disk(tmp_path):
    """Several outputs of one step (aggregate's tables) are written all-or-nothing: ENOSPC on the third leaves the
    previous files untouched and no new or temporary file, and is a UserError naming the file."""
    import errno

    from diffrepro import io
    from diffrepro.errors import UserError

    (tmp_path / "a.csv").write_text("old")
    before = _snapshot(tmp_path)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="c.parquet.*No space left"):
        io.write_all([(tmp_path / "a.csv", lambda p: p.write_text("new")),
                      (tmp_path / "b.csv", lambda p: p.write_text("new")),
                      (tmp_path / "c.parquet", full)])
    assert _snapshot(tmp_path) == before and (tmp_path / "a.csv").read_text() == "old"


# --- Snakemake: the config race and a flipped weight -----------------------------------------------------------
def _smk(workdir, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          env=run_env(), timeout=timeout)


def _model_state(path):
    import torch

    blob = torch.load(path, weights_only=True)
    return blob["spec"], blob["steps"], {k: v.clone() for k, v in blob["state_dict"].items()}


@pytest.mark.slow
def test_dry_run_of_other_params_during_a_run_changes_nothing(tmp_path):
    """Run A parses, then waits (--wait-for-files) while a dry run of B (other lr and steps) parses; the run's
    results must be those of a clean run of A (bit-identical weights). Then a byte flipped in model.pt (size and mtime kept) is refused by the
    next job that reads it, naming the file."""
    import torch

    target = "results/models/toy2d/model.pt"
    a = _tiny_params()
    b = _set(_set(copy.deepcopy(a), "models.toy2d.train.lr", 1.0e-3), "models.toy2d.train.steps", 30)
    wd = copy_worktree(ROOT, tmp_path / "raced")
    (wd / "params/a.yaml").write_text(yaml.safe_dump(a))
    (wd / "params/b.yaml").write_text(yaml.safe_dump(b))
    go = wd / "go"
    run = subprocess.Popen([sys.executable, "-m", "snakemake", target, "--cores", "1", "--wait-for-files", str(go),
                            "--latency-wait", "300", "--configfile", "params/a.yaml"], cwd=wd,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run_env())
    deadline = time.monotonic() + 300
    while not any((wd / ".snakemake/diffrepro").glob("params-*.yaml")) and time.monotonic() < deadline:
        time.sleep(0.2)  # run A has parsed (and written its params copy); its jobs wait for `go`
    dry = _smk(wd, target, "-n", "--cores", "1", "--configfile", "params/b.yaml")
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]
    assert len(list((wd / ".snakemake/diffrepro").glob("params-*.yaml"))) == 2
    go.touch()
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-3000:]

    # the clean run of A: the same steps, in-process, in a folder of their own
    from diffrepro.cli import main

    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "a.yaml").write_text(yaml.safe_dump(a))
    assert main(["prepare", "--params", str(clean / "a.yaml"), "--dataset", "toy2d", "--out-dir", str(clean)]) == 0
    assert main(["train", "--params", str(clean / "a.yaml"), "--model", "toy2d", "--data", str(clean / "data.npz"),
                 "--out-dir", str(clean), "--threads", "1", "--no-progress"]) == 0
    raced, clean_state = _model_state(wd / target), _model_state(clean / "model.pt")
    assert raced[0] == clean_state[0] and raced[1] == clean_state[1] == a["models"]["toy2d"]["train"]["steps"]
    assert all(torch.equal(raced[2][k], clean_state[2][k]) for k in clean_state[2])
    runs = {"raced": wd}
    prov = json.loads((runs["raced"] / (target + ".prov.json")).read_text())
    assert prov["params"]["path"].startswith(".snakemake/diffrepro/params-")
    assert prov["params"]["sha256_16"] in prov["params"]["path"]

    wd = runs["raced"]
    # the params path (whole-config hash) is not a rerun trigger: another sampling section does not retrain
    c = _set(copy.deepcopy(a), "sampling.sampler_options.ddim.eta", 0.5)
    (wd / "params/c.yaml").write_text(yaml.safe_dump(c))
    dry = _smk(wd, target, "-n", "--cores", "1", "--configfile", "params/c.yaml")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]

    model = wd / target
    st = model.stat()
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = _smk(wd, "results/samples/toy2d/_reference.npz", "--cores", "1", "--configfile", "params/a.yaml")
    log = (wd / "logs/reference/toy2d.log").read_text()
    assert r.returncode != 0, r.stdout[-2000:]
    assert "results/models/toy2d/model.pt" in log and "sha256" in log and "Traceback" not in log, log
    assert not (wd / "results/samples/toy2d/_reference.npz").exists()
