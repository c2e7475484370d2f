import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from imgclf.data.images import (
    BACKGROUND,
    DRAFT_MARGIN,
    ResizeJob,
    StaleSplitError,
    fit_to_size,
    fitted_size,
    load_rgb,
    resize_files,
    to_rgb,
)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def test_grayscale_becomes_rgb():
    image = to_rgb(Image.new("L", (4, 4), 77))
    assert image.mode == "RGB" and pixels(image)[0, 0].tolist() == [77, 77, 77]


def test_rgba_is_composited_on_the_background_not_dropped_to_black():
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 255))  # opaque red stays red
    rgba.putpixel((1, 0), (0, 0, 0, 0))  # transparent becomes the background
    assert pixels(to_rgb(rgba)).tolist() == [[[255, 0, 0], list(BACKGROUND)]]


def test_palette_with_transparency_is_composited():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 1
    assert pixels(to_rgb(image)).tolist() == [[[0, 0, 255], list(BACKGROUND)]]


def test_cmyk_becomes_rgb():
    assert pixels(to_rgb(Image.new("CMYK", (1, 1), (0, 255, 255, 0))))[0, 0].tolist() == [255, 0, 0]


def test_16_bit_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # a real 16-bit PNG
    decoded = load_rgb(path)
    assert pixels(decoded.image)[0, :, 0].tolist() == [0, 128, 255]
    assert decoded.repairs == ["I;16 pixels scaled to 8 bits"]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    decoded = load_rgb(path)
    upright = decoded.image
    assert decoded.repairs == [] and decoded.warnings == []
    assert upright.size == (2, 4)
    assert pixels(upright)[0, 1].mean() > 200  # the white corner moved to the top right


@pytest.mark.parametrize("mode", ["stretch", "pad", "crop"])
def test_every_mode_gives_the_requested_height_and_width(mode):
    assert fit_to_size(Image.new("RGB", (300, 100)), (24, 48), mode).size == (48, 24)


def test_pad_letterboxes_with_the_background():
    wide = fit_to_size(Image.new("RGB", (40, 10), (0, 0, 0)), (20, 20), "pad")
    assert pixels(wide)[0, 10].tolist() == list(BACKGROUND)  # the bar above the image
    assert pixels(wide)[10, 10].tolist() == [0, 0, 0]


def test_crop_keeps_the_center():
    image = Image.new("RGB", (30, 10), (255, 0, 0))
    image.paste((0, 255, 0), (10, 0, 20, 10))
    assert pixels(fit_to_size(image, (10, 10), "crop"))[5, 5].tolist() == [0, 255, 0]


def test_resize_files_returns_the_usable_pixels_in_order_and_reports_unusable_files_with_a_reason(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(folder / "green.jpg", quality=95)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    (folder / "text.png").write_text("hello")
    Image.new("RGB", (20, 30), (200, 0, 0)).save(folder / "red.png")
    names = ["green.jpg", "truncated.jpg", "text.png", "red.png"]

    images, outcomes = resize_files([ResizeJob(folder / name) for name in names], (16, 8), "stretch", workers=2)

    assert images.shape == (2, 16, 8, 3) and images.dtype == np.uint8
    assert np.abs(images[0].astype(int) - (10, 200, 30)).max() <= 3  # green, then red: the order of the jobs
    assert images[1].tolist() == np.full((16, 8, 3), (200, 0, 0)).tolist()
    assert [outcome.source.name for outcome in outcomes] == names
    unusable = {outcome.source.name: outcome.reason for outcome in outcomes if outcome.action == "skipped"}
    assert set(unusable) == {"truncated.jpg", "text.png"}
    assert "truncated" in unusable["truncated.jpg"].lower()
    assert "cannot identify image file" in unusable["text.png"]


def test_a_file_that_changed_or_vanished_since_the_split_stops_the_resize(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()
    images, _ = resize_files([ResizeJob(path, recorded)], (4, 4), "stretch", workers=1)
    assert len(images) == 1

    Image.new("RGB", (8, 8), (1, 1, 1)).save(path)
    with pytest.raises(StaleSplitError, match="a.png has changed since the split recorded it: run `dvc repro`"):
        resize_files([ResizeJob(path, recorded)], (4, 4), "stretch", workers=1)
    path.unlink()
    with pytest.raises(StaleSplitError, match="a.png is listed in the split but does not exist"):
        resize_files([ResizeJob(path, recorded)], (4, 4), "stretch", workers=1)


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth shapes plus sensor-like noise: detail at every scale, as in a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([128 + 100 * np.sin(9 * x + 3 * y), 128 + 100 * np.cos(7 * y), 128 + 80 * np.sin(5 * (x + y))],
                    axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize(("mode", "expected"), [("stretch", (64, 32)), ("pad", (48, 32)), ("crop", (64, 43))])
def test_fitted_size_before_padding_or_cropping(mode, expected):
    assert fitted_size((300, 200), (32, 64), mode) == expected


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_that_keeps_the_margin(tmp_path):
    path = tmp_path / "large.jpg"
    photo_like(2400, 1600).save(path, quality=92)
    decoded = load_rgb(path, size=(64, 64), mode="stretch")
    assert decoded.image.size == (300, 200)  # 1/8 scale: still at least 2x the 64 pixels on each side
    assert min(decoded.image.size) >= DRAFT_MARGIN * 64
    assert load_rgb(path).image.size == (2400, 1600)  # no target: full size


def test_reduced_scale_decoding_looks_the_same_as_a_full_decode(tmp_path):
    path = tmp_path / "large.jpg"
    photo_like(2400, 1600, seed=1).save(path, quality=92)
    for mode in ("stretch", "pad", "crop"):
        fast = np.asarray(fit_to_size(load_rgb(path, size=(96, 96), mode=mode).image, (96, 96), mode), float)
        with Image.open(path) as full:
            reference = np.asarray(fit_to_size(full.convert("RGB"), (96, 96), mode), float)
        psnr = 10 * np.log10(255**2 / np.mean((fast - reference) ** 2))
        assert psnr >= 35, (mode, psnr)


def test_a_rotated_jpeg_asks_for_enough_pixels_on_its_upright_sides(tmp_path):
    """Stored 3200 wide and 800 high, shown upright 800 wide and 3200 high (EXIF orientation 6).

    For 100 wide and 25 high upright, the stored height must give 2x100 pixels: 1/4 scale. Reading
    the target in stored orientation would allow 1/8 and leave only 100 pixels across.
    """
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    photo_like(3200, 800).save(path, quality=92, exif=exif)
    decoded = load_rgb(path, size=(25, 100), mode="stretch")
    assert decoded.image.size == (200, 800)  # upright: width 200 >= 2 x 100, height 800 >= 2 x 25


# --- a mistake to fix is never a bad file -------------------------------------------------------

def test_what_pillow_raises_for_a_bad_file_becomes_a_reason_and_a_pipeline_error_passes_through():
    from imgclf.data.images import UnusableImageError, unusable_image_errors
    from imgclf.plumbing.errors import PipelineError

    with pytest.raises(UnusableImageError, match="ValueError: tile cannot extend outside image"), \
            unusable_image_errors():
        raise ValueError("tile cannot extend outside image")
    with pytest.raises(PipelineError, match="run `dvc repro`"), unusable_image_errors():
        raise StaleSplitError("run `dvc repro`")  # a ValueError too, but a person's to fix


def test_a_pipeline_error_raised_under_the_decode_stops_resize_and_predict_instead_of_skipping(
        tmp_path, monkeypatch):
    """PipelineError is a ValueError, as are Pillow's errors for bad files: it must not turn into a skip."""
    import imgclf.data.images
    import imgclf.serving.inference
    from imgclf.data.preprocessing import Preprocessing
    from imgclf.plumbing.params import ParamsError

    def refuse(*args, **kwargs):
        raise ParamsError("params.yaml: resize.mode = 'squash' is not allowed")

    path = tmp_path / "good.png"
    Image.new("RGB", (8, 8), (10, 200, 10)).save(path)
    monkeypatch.setattr(imgclf.data.images, "fit_to_size", refuse)
    with pytest.raises(ParamsError, match="resize.mode"):
        imgclf.data.images.resize_file(ResizeJob(path), (4, 4), "stretch", 200e6)
    monkeypatch.setattr(imgclf.serving.inference, "fit_to_size", refuse)
    with pytest.raises(ParamsError, match="resize.mode"):  # no model: it stops first
        imgclf.serving.inference.predict_files(None, ["a", "b"], Preprocessing((4, 4), "stretch", 200.0), [path])  # type: ignore[arg-type]
