"""Tune options as typed objects, the validation plan for small data, devices, precision and memory."""

from __future__ import annotations

import dataclasses

import pytest

import promptc
from promptc.errors import ModelError, UsageError
from promptc.options import TUNE_OPTIONS
from promptc.targets.tune import selection
from promptc.targets.tune.data import Dataset, Item
from promptc.targets.tune.options import TuneOptions
from promptc.workflows.tune import tune
from tests.models.test_tune import METHODS, program_with


def test_tune_options_mirror_the_registry():
    names = {f.name for f in dataclasses.fields(TuneOptions)} - {"given"}
    assert names == set(TUNE_OPTIONS)
    o = TuneOptions.build({"base": "minilm"})
    assert (o.batch_size, o.method, o.val_split, o.device, o.dtype, o.grad_accum) == \
        (TUNE_OPTIONS["batch_size"].default, "auto", None, "auto", "auto", 1)
    with pytest.raises(KeyError):
        TuneOptions.build({"batch_sise": 3})


def test_auto_method_picks_by_family_and_refuses_options_it_cannot_use():
    o = TuneOptions.build({})
    assert o.resolved("classifier").method == "lora" and o.resolved("causal").method == "prompt_tuning"
    with pytest.raises(UsageError, match="virtual_tokens.*does not apply to method 'lora'"):
        TuneOptions.build({"virtual_tokens": 4}).resolved("classifier")
    # the checker accepts method-specific options when the method is left to auto
    promptc.loads('task t(x: str) -> str { prompt "{{ x }}" }\ntarget tune a for t { virtual_tokens = 4 }')


def _items(per_label: int, labels=("a", "b", "c")) -> list[Item]:
    return [Item({"x": f"{lb}{i}"}, lb, "test", f"{lb}{i}", lb, k) for k, lb in enumerate(labels)
            for i in range(per_label)]


def test_small_data_trains_on_everything_by_default():
    data = Dataset(_items(16), [], ["a", "b", "c"])
    split, v = selection.plan(data, TuneOptions.build({}))
    assert (len(split.train), split.val, v.size) == (48, [], 0)
    assert "would hold out" in v.reason and "fewer than 5 per label" in v.reason and v.warning is None
    big = Dataset(_items(80), [], ["a", "b", "c"])
    split, v = selection.plan(big, TuneOptions.build({}))
    assert len(split.val) == 24 and min(v.per_label.values()) >= selection.MIN_PER_LABEL


def test_a_validation_split_too_small_to_choose_anything_warns_with_numbers():
    data = Dataset(_items(16), [], ["a", "b", "c"])
    split, v = selection.plan(data, TuneOptions.build({"val_split": 0.1}))
    assert len(split.val) == 5
    assert v.warning is not None
    assert "holds 5 examples" in v.warning and "steps of 20 points" in v.warning and "5 per label" in v.warning


def test_folds_are_stratified_and_cover_every_item_once():
    items = _items(6)
    folds = selection.folds(items, 3, seed=0)
    held = [it.input["x"] for _, h in folds for it in h]
    assert sorted(held) == sorted(it.input["x"] for it in items)
    for train, h in folds:
        assert len(train) + len(h) == len(items)
        assert sorted(it.target for it in h) == ["a", "a", "b", "b", "c", "c"]


def test_device_and_dtype_choices():
    import torch

    from promptc.models.device import pick_device, pick_dtype

    assert pick_device("cpu") == "cpu" and pick_dtype("auto", "cpu") == "float32"
    assert pick_dtype("bfloat16", "cpu") == "bfloat16"
    if not torch.cuda.is_available():
        assert pick_device("auto") in ("cpu", "mps")
        with pytest.raises(ModelError, match="no CUDA device"):
            pick_device("cuda")


def test_qlora_without_cuda_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error is for machines without it")
    prog = program_with(METHODS["lora"], extra=', quantize = "4bit"')
    with pytest.raises(ModelError, match="needs a CUDA device"):
        tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    assert not (tmp_path / "a").exists()


def test_bfloat16_trains_and_the_manifest_records_resources(tmp_path):
    prog = program_with(METHODS["lora"], extra=', dtype = "bfloat16", grad_accum = 3')
    res = tune(prog.ir, "t", out=tmp_path / "a", gate=False)
    r = res.manifest["resources"]
    assert (r["device"], r["dtype"], r["processes"], r["grad_accum"]) == ("cpu", "bfloat16", 1, 3)
    assert r["memory_estimate"]["total"] > 0 and r["peak_memory"] is None  # host RSS is reported, not recorded
    assert res.peak_rss > 0
    import safetensors.torch

    saved = safetensors.torch.load_file(str(tmp_path / "a" / "adapter" / "adapter_model.safetensors"))
    assert all(str(t.dtype) == "torch.float32" for t in saved.values())  # trainable weights stayed fp32
    out = promptc.load_artifact(tmp_path / "a", prog).run({"word": "apple"})
    assert out.ok


def test_grad_accum_gives_the_same_step_as_one_batch(tmp_path):
    a = tune(program_with(METHODS["lora"]).ir, "t", out=tmp_path / "a", gate=False)
    b = tune(program_with(METHODS["lora"], extra=", grad_accum = 3").ir, "t", out=tmp_path / "b", gate=False)
    la = [r["loss"] for r in a.manifest["training"]["curve"]]
    lb = [r["loss"] for r in b.manifest["training"]["curve"]]
    assert la == pytest.approx(lb, rel=1e-4, abs=1e-5)


def test_a_run_that_cannot_fit_is_refused_before_training(tmp_path):
    from promptc.models.device import MemoryEstimate, check_fits

    est = MemoryEstimate(weights=8 << 30, optimizer=1 << 30, activations=4 << 30, available=2 << 30)
    with pytest.raises(ModelError, match="does not fit") as e:
        check_fits(est, "cuda")
    assert "13.00 GiB of 2.0 GiB free" in str(e.value) and "gradient_checkpointing" in (e.value.hint or "")


def test_memory_estimate_scales_with_batch_length_and_checkpointing():
    from transformers import GPT2Config

    from promptc.models.device import estimate_memory

    cfg = GPT2Config(n_embd=1024, n_layer=24, n_head=16)
    kw = dict(dtype="bfloat16", device="meta")
    small = estimate_memory(cfg, 355_000_000, 1_000_000, batch=1, length=256, **kw)
    big = estimate_memory(cfg, 355_000_000, 1_000_000, batch=8, length=256, **kw)
    ckpt = estimate_memory(cfg, 355_000_000, 1_000_000, batch=8, length=256, checkpointing=True, **kw)
    assert small.weights == 710_000_000 and small.optimizer == 16_000_000
    assert big.activations > 6 * small.activations and ckpt.activations < big.activations / 3


def test_search_reports_each_trial_and_keeps_the_best(tmp_path):
    pytest.importorskip("optuna")
    from promptc.workflows.tune import search

    prog = program_with(METHODS["lora"])
    rows = []
    res = search(prog.ir, "t", 3, objective="gate", report=rows.append, out=tmp_path / "a",
                 overrides={"max_steps": 2})
    assert [r["trial"] for r in rows] == [1, 2, 3] and all(0 <= r["value"] <= 1 for r in rows)
    rec = res.manifest["search"]
    assert rec["trials"] == rows and rec["best"]["value"] == max(r["value"] for r in rows)
    assert res.manifest["options"]["r"] == rec["best"]["options"]["r"]
    assert res.manifest["lr"] == pytest.approx(rec["best"]["options"]["lr"])
