"""The CI guard of the promise (docs/scale.md) that memory is bounded by settings, never by the data.

The real pipeline (``dvc repro``) runs at photo size, 224x224 with ``simple_cnn``, on N and on 4N
synthetic photos; every stage's peak resident memory, its helper processes included (the train
stage's ONNX converter), must stay under :data:`LIMIT_BYTES` and must not grow by more than
:data:`GROWTH` from N to 4N. N is small: the figure is memory, not time. Sampled from outside by
tests/stage_memory.py, as the kernel's out-of-memory killer counts it.
"""

from __future__ import annotations

import pytest

from tests.helpers import command_env, make_project, set_params, synthetic_photos
from tests.stage_memory import run_measuring_stages

pytestmark = pytest.mark.slow

# Photos at the smaller size, a quarter of them validation and a quarter test images. At N every batch
# a stage holds is already full (32 training images, the ONNX check's 32 validation images, the
# evaluate stage's 32 and the heatmaps' 16), so any growth from N to 4N is growth with the data,
# not a batch filling up. Every other setting is the default.
N = 128
LIMIT_BYTES = 3 * 2**30
GROWTH = 1.15
PHOTO_PARAMS = {"data.source": "folder", "resize.size": [224, 224], "train.model": "simple_cnn", "train.epochs": 1,
                "train.tensorboard": False, "split.val": 0.25, "split.test": 0.25}


def test_no_stage_needs_more_memory_for_more_photos_and_none_needs_3_gb(tmp_path):
    photos = tmp_path / "photos"
    peaks = {}
    for count in (N, 4 * N):
        synthetic_photos(photos, count)  # the first N of 4N are the same files
        project = make_project(tmp_path / f"project-{count}")
        set_params(project, **PHOTO_PARAMS, **{"data.path": str(photos)})
        measured = run_measuring_stages(["dvc", "repro"], project, command_env(), tmp_path / f"repro-{count}.log")
        assert measured.returncode == 0, measured.output[-6000:]
        assert (project / "models" / "model.onnx").is_file(), "the guard must measure the ONNX copy too"
        peaks[count] = measured.stage_peaks
    report = "\n".join(f"  {stage:>8}: {peaks[N][stage] / 2**20:6.0f} MB at {N} photos, "
                       f"{peaks[4 * N][stage] / 2**20:6.0f} MB at {4 * N}" for stage in peaks[N])
    print(f"peak resident memory by stage:\n{report}")
    too_big = [f"{stage} peaks at {peak / 2**30:.2f} GB with {count} photos (limit {LIMIT_BYTES / 2**30:.0f} GB)"
               for count, stage_peaks in peaks.items() for stage, peak in stage_peaks.items() if peak > LIMIT_BYTES]
    growing = [f"{stage} grows {peaks[4 * N][stage] / peaks[N][stage]:.2f}x from {N} to {4 * N} photos "
               f"(limit {GROWTH}x)" for stage in peaks[N] if peaks[4 * N][stage] > GROWTH * peaks[N][stage]]
    assert not too_big + growing, "\n".join(too_big + growing) + "\n" + report
