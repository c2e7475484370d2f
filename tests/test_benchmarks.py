"""The benchmarks say whether their targets were met with their exit status, after their figures."""

from __future__ import annotations

import ast
import importlib.util
import json

import pytest

from tests.helpers import PROJECT_ROOT

BENCHMARKS = PROJECT_ROOT / "benchmarks"


def load_targets_module():
    spec = importlib.util.spec_from_file_location("targets", BENCHMARKS / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missed_target_makes_the_exit_status_1_and_is_named(capsys):
    targets = load_targets_module().Targets()
    assert targets.check("no-op dvc repro < 5 s", True) == "met"
    assert targets.exit_status() == 0
    assert targets.check("loader >= 5x", False) == "NOT met"
    assert targets.exit_status() == 1
    assert "targets NOT met: loader >= 5x" in capsys.readouterr().err


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.py") if path.name != "targets.py"))
def test_every_benchmark_returns_its_targets_exit_status(script):
    """Each script's main ends with `return targets.exit_status()`, and prints no verdict of its own."""
    source = (BENCHMARKS / script).read_text()
    main = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "main")
    final = main.body[-1]
    assert isinstance(final, ast.Return) and ast.unparse(final) == "return targets.exit_status()", script
    assert "'met' if" not in source and '"met" if' not in source, f"{script} decides a target outside Targets"


def test_the_gpu_benchmark_runs_every_stage_of_dvc_yaml_in_its_order_with_all_its_commands(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    gpu_train_rate = importlib.import_module("gpu_train_rate")

    stages = gpu_train_rate.stage_commands(PROJECT_ROOT)

    assert [name for name, _ in stages] == ["download", "split", "resize", "train", "evaluate", "export"]
    train = dict(stages)["train"]
    assert [command.split()[:2] for command in train] == [["python", "stages/train.py"],
                                                         ["python", "stages/onnx_copy.py"]]


def test_the_cifar_benchmark_counts_a_float32_ninety_percent_as_reached(tmp_path, monkeypatch, capsys):
    """1,800 of 2,000 validation images right, as DVCLive writes Keras' float32 accuracy, is 90%."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    cifar = importlib.import_module("cifar_time_to_accuracy")
    history = tmp_path / "metrics/history/plots/metrics/val"
    history.mkdir(parents=True)
    (history / "accuracy.tsv").write_text("step\taccuracy\n1\t0.8500000238418579\n2\t0.8999999761581421\n")
    (tmp_path / "logs").mkdir()
    timing = {"per_epoch": [{"epoch": 1, "seconds": 60.0}, {"epoch": 2, "seconds": 60.0}]}
    (tmp_path / "logs/train_timing.json").write_text(json.dumps(timing))

    cifar.print_time_to_accuracy(cifar.accuracy_by_time(tmp_path))

    printed = capsys.readouterr().out
    assert "validation accuracy 85%: after 1.0 minutes of training" in printed
    assert "validation accuracy 90%: after 2.0 minutes of training" in printed


# Lines of oneDNN's verbose log as TensorFlow 2.20 wrote them on an AMX Xeon (ONEDNN_VERBOSE=1).
ONEDNN_LOG = """onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx10_1_512_amx,forward_training,src:bf16::blocked:acdb::f0 wei:bf16:a:blocked:Acdb16a::f0 bia:undef::undef::: dst:bf16::blocked:acdb::f0,,alg:convolution_direct,mb512_ic384oc384_ih7oh7kh3sh1dh0ph1_iw7ow7kw3sw1dw0pw1,50.5
onednn-profile: timed steps start
onednn_verbose,v1,primitive,exec,cpu,convolution,brgconv_bwd_w:avx10_1_512_amx,backward_weights,src:bf16::blocked:acdb::f0 wei:bf16:a:blocked:ABcd16b16a2b::f0 bia:undef::undef::: dst:bf16::blocked:acdb::f0,,alg:convolution_direct,mb512_ic384oc384_ih7oh7kh3sh1dh0ph1_iw7ow7kw3sw1dw0pw1,130.741
onednn_verbose,v1,primitive,exec,cpu,pooling,jit:avx512_core_bf16,forward_training,src:bf16::blocked:acdb::f0 dst:bf16::blocked:acdb::f0 ws:u8::blocked:acdb::f0,,alg:pooling_max,mb512ic128_ih31oh15kh2sh2dh0ph0_iw31ow15kw2sw2dw0pw0,16.0791
onednn-profile: timed steps end: 8.503 s
onednn_verbose,v1,primitive,exec,cpu,pooling,jit:avx512_core_bf16,forward_training,src:bf16::blocked:acdb::f0,,alg:pooling_max,mb512ic128_ih31oh15kh2sh2dh0ph0_iw31ow15kw2sw2dw0pw0,9.0"""  # noqa: E501  (the log's lines as written)


def test_the_onednn_profile_reads_the_timed_steps_primitives_and_counts_a_convolutions_flops(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    profile = importlib.import_module("onednn_profile")

    primitives = profile.parse_log(ONEDNN_LOG.splitlines())

    assert [(p.kind, p.implementation, p.direction, p.milliseconds) for p in primitives] == [
        ("convolution", "brgconv_bwd_w:avx10_1_512_amx", "backward_weights", 130.741),
        ("pooling", "jit:avx512_core_bf16", "forward_training", 16.0791)]
    # 512 images x 7 x 7 outputs x 384 x 384 channels x 3 x 3, two FLOPs a multiply-add
    assert profile.convolution_flops(primitives[0].shape) == 2 * 512 * 7 * 7 * 384 * 384 * 3 * 3
    grouped = "mb2_g32ic32oc32_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1"  # 32 groups of one channel each
    assert profile.convolution_flops(grouped) == 2 * 2 * 8 * 8 * 32 * 3 * 3
    with pytest.raises(ValueError, match="not a 2-D convolution"):
        profile.convolution_flops(primitives[1].shape)


def test_a_param_the_baseline_does_not_know_is_left_out_of_its_runs_and_named(tmp_path, monkeypatch):
    """machine_limit.py --baseline: a commit from before a param (Muon's rate) trains without it."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    machine_limit = importlib.import_module("machine_limit")
    (tmp_path / "params.yaml").write_text("train:\n  optimizer: adam\n  augment:\n    translate: 0\n")
    params = {"train.optimizer": "sgd", "train.muon_momentum": 0.6, "train.augment.translate": 2,
              "train.augment.cutout": 8, "evaluate.tta": "flip"}

    known, left_out = machine_limit.known_params(params, tmp_path)

    assert known == {"train.optimizer": "sgd", "train.augment.translate": 2}
    assert left_out == ["train.muon_momentum", "train.augment.cutout", "evaluate.tta"]
