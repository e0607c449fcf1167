"""NVlabs EDM / diff-sampler network pickles, loaded without EDM's `torch_utils` or `dnnlib` installed.

Format: `pickle.load` gives `{'ema': net, ...}`. Every network class of those code bases is a *persistent record*:
its pickle is the call `torch_utils.persistence._reconstruct_persistent_obj(meta)` with `meta = {type: 'class',
version, module_src, class_name, state}`; `module_src` is the full Python source of the module defining the class,
which is executed as a fresh module, and `state` is the object's `__dict__` (nested records inside). We answer that
call with `reconstruct_record` below, and provide, only while unpickling, the few modules the embedded sources import
(`torch_utils`, `torch_utils.persistence`, `torch_utils.misc`, `dnnlib`). **Unpickling runs the code stored in the
file**: only paths configured in the params file are ever opened, and every load logs one line saying so.

The preconditioned net is called `net(x_ve, sigma, class_labels)` and returns D(x; σ) in EDM's σ-parameterisation
(x_ve = x0 + σ·ε, GEO §1.1–1.3). Mapped to our denoiser in the net's own time:
- VPPrecond (attributes beta_d, beta_min, epsilon_t): σ(t) = √(exp(½β_d t² + β_min t) − 1) is our `vp_linear`
  with β0 = β_min, β1 = β_min + β_d, and D_vp(x_t, t) = net(x_t/α(t), σ_ve(t)) (GEO §1.3).
- VEPrecond / EDMPrecond / iDDPMPrecond: our `edm` schedule (t = σ) and D(x, σ) = net(x, σ).
The default sampling range is EDM's sampler range σ ∈ [0.002, 80] clipped to the net's [sigma_min, sigma_max]
(source options `sigma_min`, `sigma_max` override it). Class-conditional nets (label_dim > 0) take one-hot labels;
they have no null class, so classifier-free guidance (scale ≠ 1) is refused.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.abc
import importlib.machinery
import pickle
import sys
import types
from pathlib import Path

import torch

from ..diffusion.denoisers import _labels_for
from ..diffusion.schedules import EDM, VPLinear
from ..errors import UserError

RELEASE_NOTE = ("published on the NVlabs EDM release page (networks under pretrained/, e.g. "
                "edm-cifar10-32x32-uncond-vp.pkl; converted ScoreSDE/ADM baselines under baseline/, e.g. "
                "baseline-cifar10-32x32-uncond-vp.pkl)")
EDM_SAMPLING_RANGE = (0.002, 80.0)  # EDM / diff-sampler sampler defaults (GEO §3.1)
SHIM_ROOTS = ("torch_utils", "dnnlib")


# --- what the embedded module sources import ------------------------------------------------------------------------
class EasyDict(dict):
    """A dict with attribute access (dnnlib.EasyDict; training pickles store dataset/loss options in it)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


_MODULE_SOURCES: dict[str, str] = {}   # module name -> the source it was executed from
_MODULES_BY_DIGEST: dict[str, types.ModuleType] = {}


def persistent_class(orig_class):
    """The decorator of `torch_utils.persistence`: marks a class as a record and keeps its constructor arguments."""
    if getattr(orig_class, "_persistent_record", False):
        return orig_class

    class Record(orig_class):
        _persistent_record = True
        _orig_module_src = _MODULE_SOURCES.get(orig_class.__module__)
        _orig_class_name = orig_class.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args, self._init_kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return EasyDict(copy.deepcopy(self._init_kwargs))

    Record.__name__, Record.__qualname__, Record.__module__ = (orig_class.__name__, orig_class.__qualname__,
                                                               orig_class.__module__)
    return Record


def _module_from_source(src: str) -> types.ModuleType:
    """Execute an embedded module source once per distinct source (nested records share their module)."""
    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    if digest not in _MODULES_BY_DIGEST:
        name = f"_diffrepro_edm_record_{digest}"
        module = types.ModuleType(name)
        _MODULE_SOURCES[name] = src
        sys.modules[name] = module  # classes pickle and deep-copy by module name
        exec(compile(src, f"<network pickle module {digest}>", "exec"), module.__dict__)  # noqa: S102 (see docstring)
        _MODULES_BY_DIGEST[digest] = module
    return _MODULES_BY_DIGEST[digest]


def reconstruct_record(meta: dict):
    """Our answer to `torch_utils.persistence._reconstruct_persistent_obj(meta)`."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "module_src" not in meta:
        raise UserError(f"network pickle holds a persistent record of an unsupported form "
                        f"(type {meta.get('type') if isinstance(meta, dict) else type(meta).__name__})")
    module = _module_from_source(meta["module_src"])
    if meta["class_name"] not in module.__dict__:
        raise UserError(f"network pickle: class '{meta['class_name']}' is not defined by its embedded source")
    cls = persistent_class(module.__dict__[meta["class_name"]])
    obj = cls.__new__(cls)
    state = EasyDict(meta["state"]) if isinstance(meta["state"], dict) else meta["state"]
    setstate = getattr(obj, "__setstate__", None)
    if callable(setstate):
        setstate(state)
    else:
        obj.__dict__.update(state)
    return obj


def _constant(value, shape=None, dtype=None, device=None, memory_format=None):
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if shape is not None:
        t = torch.broadcast_to(t, shape)
    return t.contiguous(memory_format=memory_format or torch.contiguous_format)


def _assert_shape(tensor, ref_shape):
    if tensor.ndim != len(ref_shape) or any(r is not None and int(s) != int(r) for s, r in zip(tensor.shape, ref_shape)):
        raise AssertionError(f"tensor of shape {list(tensor.shape)}, expected {list(ref_shape)}")


def _profiled_function(fn):
    return fn


@contextlib.contextmanager
def _suppress_tracer_warnings():
    yield


class _Unavailable(types.ModuleType):
    """A module of EDM's code bases that we do not provide: importing works, using any of it says so."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*_a, **_k):
            raise UserError(f"network pickle uses {self.__name__}.{name}, which diffrepro does not provide "
                            f"(only the network, not training helpers, can be loaded)")
        return unavailable


def _shim_modules() -> dict[str, types.ModuleType]:
    def module(name, package=False, **attrs):
        m = types.ModuleType(name)
        if package:
            m.__path__ = []
        m.__dict__.update(attrs)
        return m

    persistence = module("torch_utils.persistence", persistent_class=persistent_class,
                         _reconstruct_persistent_obj=reconstruct_record,
                         is_persistent=lambda obj: getattr(obj, "_persistent_record", False),
                         import_hook=lambda hook: hook)
    misc = module("torch_utils.misc", constant=_constant, assert_shape=_assert_shape,
                  profiled_function=_profiled_function, suppress_tracer_warnings=_suppress_tracer_warnings,
                  nan_to_num=torch.nan_to_num, EasyDict=EasyDict)
    util = module("dnnlib.util", EasyDict=EasyDict)
    root = module("torch_utils", package=True, persistence=persistence, misc=misc)
    dnnlib = module("dnnlib", package=True, EasyDict=EasyDict, util=util)
    return {m.__name__: m for m in (root, persistence, misc, dnnlib, util)}


class _ShimFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Any other `torch_utils.X` / `dnnlib.X` import resolves to a placeholder module while unpickling."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in SHIM_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _Unavailable(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def shims_installed():
    """Register the shim modules in sys.modules (and the placeholder finder) only while a pickle is loaded."""
    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] in SHIM_ROOTS}
    for n in saved:
        del sys.modules[n]
    sys.modules.update(_shim_modules())
    finder = _ShimFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for n in [n for n in sys.modules if n.split(".")[0] in SHIM_ROOTS]:
            del sys.modules[n]
        sys.modules.update(saved)


def _storage_on_cpu(data: bytes):
    """Tensor storages of a plain pickle, restored on the CPU whatever device they were saved from."""
    import io

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


class RecordUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            return reconstruct_record
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_on_cpu
        return super().find_class(module, name)


def read_network_pickle(path: Path, ema_key: str = "ema"):
    """The network stored under `ema_key` of an EDM-format pickle (runs the code embedded in the file)."""
    print(f"loading network pickle {path}: unpickling runs the Python code stored in it (only configured paths are "
          f"loaded)", file=sys.stderr)
    with shims_installed(), open(path, "rb") as fh:
        try:
            data = RecordUnpickler(fh).load()
        except UserError:
            raise
        except Exception as exc:  # a truncated or foreign file: pickle/EOF/attribute errors
            raise UserError(f"network pickle {path} could not be read ({type(exc).__name__}: {exc})") from None
    if isinstance(data, dict):
        if ema_key not in data:
            raise UserError(f"network pickle {path} has no '{ema_key}' entry (keys: {sorted(map(str, data))}); "
                            f"set source.ema_key")
        data = data[ema_key]
    if not isinstance(data, torch.nn.Module) or not hasattr(data, "sigma_min"):
        raise UserError(f"network pickle {path}: '{ema_key}' is not an EDM preconditioned network "
                        f"(no sigma_min attribute)")
    return data


# --- the source interface (sources.__init__) ------------------------------------------------------------------------
def resolve(source: dict) -> dict:
    return {"ema_key": "ema", **source}


def checkpoint_files(source: dict) -> list[Path]:
    path = Path(source["path"])
    if not path.is_file():
        raise UserError(f"EDM network pickle not found: {path} (expected the file '{path.name}', {RELEASE_NOTE}; "
                        f"download it yourself and set models.<m>.source.path)")
    return [path]


def _is_vp(net) -> bool:
    return all(hasattr(net, a) for a in ("beta_d", "beta_min", "epsilon_t"))


def net_schedule(net, sigma_min: float | None = None, sigma_max: float | None = None):
    """The net's own time coordinates with EDM's sampling range (or the one given), clipped to the net's σ range."""
    lo = max(float(net.sigma_min), EDM_SAMPLING_RANGE[0] if sigma_min is None else float(sigma_min))
    hi = min(float(net.sigma_max), EDM_SAMPLING_RANGE[1] if sigma_max is None else float(sigma_max))
    if not 0 < lo < hi:
        raise UserError(f"EDM network: sampling range σ ∈ [{lo}, {hi}] is empty (net range [{float(net.sigma_min)}, "
                        f"{float(net.sigma_max)}])")
    if _is_vp(net):
        beta_min, beta_d = float(net.beta_min), float(net.beta_d)
        full = VPLinear(beta0=beta_min, beta1=beta_min + beta_d)
        return VPLinear(beta0=beta_min, beta1=beta_min + beta_d, t_min=float(full.t_from_sigma_ve(lo)),
                        t_max=min(1.0, float(full.t_from_sigma_ve(hi))))
    return EDM(sigma_min=lo, sigma_max=hi, sigma_data=float(getattr(net, "sigma_data", 0.5)))


def _one_hot_labels(labels, batch: int, label_dim: int, device) -> torch.Tensor:
    return torch.nn.functional.one_hot(_labels_for(labels, batch, device), label_dim).to(torch.float32)


def edm_denoiser(net, schedule, labels=None, guidance_scale=None, grad: bool = False):
    """D(x_t, t) = net(x_t/α(t), σ_ve(t), one-hot labels) in `schedule`'s time (α = 1, σ_ve = t for `edm`).
    The per-t scalars are computed once per distinct t (samplers revisit few times)."""
    label_dim = int(getattr(net, "label_dim", 0))
    if guidance_scale is not None and guidance_scale != 1.0:
        raise UserError("EDM networks have no unconditional (null-class) mode: classifier-free guidance needs "
                        "guidance_scale = 1")
    if label_dim and labels is None:
        raise UserError(f"this EDM network is class-conditional ({label_dim} classes): pass class labels")
    if labels is not None and not label_dim:
        raise UserError("this EDM network is unconditional: it takes no class labels")

    @functools.lru_cache(maxsize=4096)
    def scalars(t: float, device: torch.device):
        return 1.0 / float(schedule.alpha(t)), torch.tensor(float(schedule.sigma_ve(t)), dtype=torch.float64,
                                                              device=device)

    one_hot: dict = {}

    def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
        inv_alpha, sigma = scalars(float(t), x.device)
        y = None
        if label_dim:
            key = (len(x), x.device)
            if key not in one_hot:
                one_hot[key] = _one_hot_labels(labels, len(x), label_dim, x.device)
            y = one_hot[key]
        x_ve = x if inv_alpha == 1.0 else x * inv_alpha
        return net(x_ve, sigma, y).to(x.dtype)

    return denoise if grad else torch.no_grad()(denoise)


def open_source(source: dict, device):
    from . import LoadedModel

    net = read_network_pickle(Path(source["path"]), source.get("ema_key", "ema"))
    net = net.to(device).eval().requires_grad_(False)
    schedule = net_schedule(net, source.get("sigma_min"), source.get("sigma_max"))
    label_dim = int(getattr(net, "label_dim", 0))
    info = {"precond": type(net).__name__, "net_sigma_min": float(net.sigma_min),
            "net_sigma_max": float(net.sigma_max), "label_dim": label_dim,
            "use_fp16": bool(getattr(net, "use_fp16", False)), "parameterisation": "edm (σ, EDM preconditioning)"}
    # use_fp16 nets run their UNet in fp16 only on CUDA (EDM's own rule); on the CPU they compute in fp32.

    def make(labels=None, guidance_scale=None, grad=False):
        return edm_denoiser(net, schedule, labels, guidance_scale, grad)

    shape = [int(net.img_channels), int(net.img_resolution), int(net.img_resolution)]
    return LoadedModel(schedule=schedule, data_shape=shape, num_classes=label_dim, kind="edm", net=net, info=info,
                       make_denoiser=make)
