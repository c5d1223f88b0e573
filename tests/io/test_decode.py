from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cxrkit.core.errors import ImageDecodeError
from cxrkit.io import DecodeLimits, read_dicom_meta, read_image, read_image_bytes, sniff_format
from tests.conftest import gradient, write_dicom, write_png


def test_png_8bit_values_scaled_to_unit_range(tmp_path):
    img = gradient()
    p = tmp_path / "a.png"
    Image.fromarray(img).save(p)
    out = read_image(p)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, img / 255.0, atol=1e-6)


def test_png_16bit_keeps_precision(tmp_path):
    raw = (np.arange(40 * 32).reshape(40, 32) * 37 % 65535).astype(np.uint16)
    p = tmp_path / "b.png"
    Image.fromarray(raw).save(p)
    out = read_image(p)
    np.testing.assert_allclose(out, raw / 65535.0, atol=1e-7)
    assert len(np.unique(out)) > 256  # more levels than 8 bits could hold


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA", "CMYK"])
def test_colour_palette_and_alpha_become_gray(tmp_path, mode):
    gray = Image.fromarray(gradient())
    img = gray.convert(mode)
    p = tmp_path / f"c.{'jpg' if mode == 'CMYK' else 'png'}"
    img.save(p)
    out = read_image(p)
    assert out.shape == (40, 32)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.corrcoef(out.ravel(), np.asarray(gray, np.float32).ravel())[0, 1] > 0.95


def test_jpeg_decodes(tmp_path):
    p = tmp_path / "x.jpeg"
    Image.fromarray(gradient()).save(p, format="JPEG", quality=95)
    assert abs(read_image(p).mean() - gradient().mean() / 255) < 0.02


def test_zero_byte_file_names_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.png.*empty \(0 bytes\)"):
        read_image(p)


def test_truncated_png_names_file(tmp_path):
    p = write_png(tmp_path / "full.png", size=(200, 200))
    cut = tmp_path / "cut.png"
    cut.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(ImageDecodeError, match=r"cut\.png.*truncated"):
        read_image(cut)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello, I am text pretending to be a PNG" * 10)
    with pytest.raises(ImageDecodeError, match=r"notes\.png: not a supported image"):
        read_image(p)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = write_png(tmp_path / "big.png", size=(100, 100))
    with pytest.raises(ImageDecodeError, match="decompression-bomb guard"):
        read_image(p, limits=DecodeLimits(max_pixels=5000))


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_sniffing_ignores_extension(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(gradient()).save(buf, format="PNG")
    assert sniff_format(buf.getvalue()[:132]) == "png"
    p = tmp_path / "really_png.jpg"
    p.write_bytes(buf.getvalue())
    assert read_image(p).shape == (40, 32)


# -- DICOM ---------------------------------------------------------------------------------


def _ramp() -> np.ndarray:
    return (np.arange(40 * 32).reshape(40, 32) * 3).astype(np.uint16)


def test_dicom_monochrome2_and_monochrome1_inverted(tmp_path):
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", _ramp(), "MONOCHROME2"))
    m1 = read_image(write_dicom(tmp_path / "m1.dcm", _ramp(), "MONOCHROME1"))
    assert m2.shape == (40, 32) and m2.dtype == np.float32
    assert m2[0, 0] == 0.0 and m2[-1, -1] == 1.0
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_dicom_16bit_levels_survive(tmp_path):
    out = read_image(write_dicom(tmp_path / "a.dcm", _ramp()))
    assert len(np.unique(out)) == 40 * 32


def test_dicom_rescale_slope_intercept_applied(tmp_path):
    # A negative slope flips the order of values: the modality LUT must be applied.
    out = read_image(write_dicom(tmp_path / "s.dcm", _ramp(), slope=-1.0, intercept=5000))
    assert out[0, 0] == 1.0 and out[-1, -1] == 0.0


def test_dicom_window_clips_outside_values(tmp_path):
    # Window centre 1000, width 200: everything below 900 black, above 1100 white.
    out = read_image(write_dicom(tmp_path / "w.dcm", _ramp(), window=(1000, 200)))
    raw = _ramp()
    assert np.all(out[raw < 890] == 0.0)
    assert np.all(out[raw > 1110] == 1.0)
    inside = out[(raw > 910) & (raw < 1090)]
    assert inside.size and 0 < inside.min() < inside.max() < 1


def test_dicom_without_pixel_data(tmp_path):
    p = write_dicom(tmp_path / "nopix.dcm", _ramp(), with_pixels=False)
    with pytest.raises(ImageDecodeError, match=r"nopix\.dcm: the DICOM file has no pixel data"):
        read_image(p)


def test_dicom_meta_from_tags(tmp_path):
    meta = read_dicom_meta(write_dicom(tmp_path / "m.dcm", _ramp(), patient_id="ABC", study_date="20210304"))
    assert (meta.patient_id, meta.study_date, meta.view, meta.rows, meta.columns) == ("ABC", "2021-03-04", "PA", 40, 32)


def test_dicom_bytes_sniffed(tmp_path):
    data = write_dicom(tmp_path / "x.bin", _ramp()).read_bytes()
    assert sniff_format(data[:132]) == "dicom"
    assert read_image_bytes(data).shape == (40, 32)
