"""runtime: device choice, and the GPU switches (bf16 autocast, channels_last, pinned memory, threads) are no-ops
on CPU and act on CUDA."""
import random

import numpy as np
import pytest
import torch

from diffrepro import runtime
from diffrepro.errors import UserError

CPU = torch.device("cpu")
ALL_ON = {"device": "auto", "amp_bf16": True, "channels_last": True, "pin_memory": True}


def test_auto_picks_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.select_device({"device": "auto"}) == CPU
    assert runtime.select_device(None) == CPU
    assert runtime.select_device({"device": "cpu"}) == CPU


def test_auto_picks_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.select_device({"device": "auto"}).type == "cuda"
    assert runtime.select_device({"device": "cpu"}) == CPU


def test_cuda_requested_without_cuda_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="runtime.device"):
        runtime.select_device({"device": "cuda"})


def test_bf16_autocast_is_a_noop_on_cpu():
    a = torch.randn(4, 4)
    with runtime.autocast(ALL_ON, CPU):
        assert (a @ a).dtype == torch.float32
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_bf16_autocast_switch_acts_on_cuda():
    ctx = runtime.autocast(ALL_ON, torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    assert not isinstance(runtime.autocast({"amp_bf16": False}, torch.device("cuda")), torch.autocast)


def test_channels_last_is_a_noop_on_cpu():
    assert runtime.memory_format(ALL_ON, CPU) == torch.contiguous_format
    x = runtime.to_device(torch.randn(2, 3, 5, 5), ALL_ON, CPU)
    assert x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    net = runtime.to_device(torch.nn.Conv2d(3, 4, 3), ALL_ON, CPU)
    assert net.weight.is_contiguous()
    assert runtime.memory_format(ALL_ON, torch.device("cuda")) == torch.channels_last


def test_pin_memory_only_on_cuda():
    assert runtime.pin_memory(ALL_ON, CPU) is False
    assert runtime.pin_memory(ALL_ON, torch.device("cuda")) is True
    assert runtime.pin_memory({"pin_memory": False}, torch.device("cuda")) is False


def test_thread_count_switch():
    before = torch.get_num_threads()
    try:
        assert runtime.set_num_threads({"num_threads": 1}) == 1
        assert runtime.set_num_threads({"num_threads": 0}, default=2) == 2
        assert runtime.set_num_threads({"num_threads": 0}) == 2  # 0 and no default: leave as is
    finally:
        torch.set_num_threads(before)


def test_seeding_is_reproducible_and_rng_state_round_trips():
    runtime.seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(3))
    runtime.seed_everything(7)
    state = runtime.rng_state()
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
    runtime.set_rng_state(state)
    replay = (random.random(), np.random.rand(), torch.rand(3))
    assert replay[:2] == again[:2] and torch.equal(replay[2], again[2])


def test_derived_seeds_differ_by_name_and_are_stable():
    assert runtime.derive_seed(0, "train", "a") == runtime.derive_seed(0, "train", "a")
    assert runtime.derive_seed(0, "train", "a") != runtime.derive_seed(0, "train", "b")
    assert runtime.derive_seed(0, "train", "a") != runtime.derive_seed(1, "train", "a")
