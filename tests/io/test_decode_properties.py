"""Property-based tests of the decoders (Hypothesis): any bytes give a float32 image in [0, 1] or an
ImageDecodeError, never another exception. Fast examples in the default run, many more under ``-m slow``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cxrkit.core.errors import ImageDecodeError
from cxrkit.io import read_image_bytes
from cxrkit.io.decode import sniff_format
from tests.conftest import write_dicom

RUNS = [pytest.param(30, id="fast"), pytest.param(600, id="slow", marks=pytest.mark.slow)]
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"\0" * 128 + b"DICM"]


def _props(n: int):
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _check(data: bytes) -> None:
    try:
        img = read_image_bytes(data, name="prop")
    except ImageDecodeError as e:
        assert str(e).startswith("prop"), str(e)  # the message names the input
        return
    assert img.dtype == np.float32 and img.ndim == 2 and min(img.shape) >= 8
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


@st.composite
def pil_images(draw) -> bytes:
    w, h = draw(st.integers(8, 48)), draw(st.integers(8, 48))
    mode = draw(st.sampled_from(["L", "I;16", "RGB", "RGBA", "P", "1", "F", "I"]))
    fmt = draw(st.sampled_from(["PNG", "TIFF", "BMP", "JPEG"]))
    seed = draw(st.integers(0, 2**16))
    arr = np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
    elif mode == "F":
        img = Image.fromarray(arr.astype(np.float32) * draw(st.floats(-1e6, 1e6, allow_nan=False)))
    elif mode != "L":
        img = img.convert(mode)
    ok = {"PNG": ("L", "I;16", "RGB", "RGBA", "P", "1"), "BMP": ("L", "RGB", "P", "1"), "JPEG": ("L", "RGB")}
    if fmt in ok and mode not in ok[fmt]:
        fmt = "TIFF"
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def dicoms(draw, tmp_dir) -> bytes:
    h, w = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    pixels = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 4096, (h, w))
    kw = {}
    if draw(st.booleans()):
        kw["slope"], kw["intercept"] = draw(st.floats(0.01, 10)), draw(st.floats(-2000, 2000))
    if draw(st.booleans()):
        kw["window"] = (draw(st.floats(-1000, 5000)), draw(st.floats(1, 5000)))
    photometric = draw(st.sampled_from(["MONOCHROME1", "MONOCHROME2"]))
    path = write_dicom(tmp_dir / "p.dcm", pixels, photometric=photometric, **kw)
    return path.read_bytes()


@pytest.mark.parametrize("n", RUNS)
def test_arbitrary_bytes_decode_or_raise_image_decode_error(n):
    @_props(n)
    @given(st.sampled_from(MAGIC), st.binary(max_size=2048))
    def check(magic: bytes, body: bytes) -> None:
        data = magic + body
        assert sniff_format(data[:132]) in (None, "dicom", "png", "jpeg", "bmp", "tiff")
        _check(data)

    check()


@pytest.mark.parametrize("n", RUNS)
def test_valid_images_round_trip_shape_and_range(n):
    @_props(n)
    @given(pil_images())
    def check(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
        img = read_image_bytes(data, name="prop")
        assert img.shape == (h, w) and img.dtype == np.float32
        assert np.isfinite(img).all() and 0.0 <= img.min() <= img.max() <= 1.0

    check()


@pytest.mark.parametrize("n", RUNS)
def test_damaged_images_never_escape_as_other_errors(n, tmp_path):
    @_props(n)
    @given(
        st.one_of(pil_images(), dicoms(tmp_path)),
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
        st.one_of(st.none(), st.integers(0, 10**6)),
    )
    def check(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> None:
        buf = bytearray(data)
        for pos, value in flips:
            buf[pos % len(buf)] = value
        if cut is not None:
            buf = buf[: cut % (len(buf) + 1)]
        _check(bytes(buf))

    check()


@pytest.mark.parametrize("n", RUNS)
def test_dicom_windows_and_photometrics_stay_in_range(n, tmp_path):
    @_props(n)
    @given(dicoms(tmp_path))
    def check(data: bytes) -> None:
        img = read_image_bytes(data, name="prop")
        assert img.dtype == np.float32 and np.isfinite(img).all() and 0.0 <= img.min() <= img.max() <= 1.0

    check()


def test_32_bit_tiff_beyond_16_bits_stays_in_range():
    """Found by the property run: a mode-I TIFF with values above 65535 decoded to values up to 1025."""
    buf = io.BytesIO()
    Image.fromarray(np.arange(16 * 16, dtype=np.int32).reshape(16, 16) * 4000).save(buf, format="TIFF")
    img = read_image_bytes(buf.getvalue(), name="t")
    assert img.max() == pytest.approx(1.0) and img.min() == 0.0


def test_dicom_with_a_damaged_element_is_an_image_decode_error(tmp_path):
    """Found by the property run: a bad VR in (0028,1051) escaped pydicom as NotImplementedError."""
    data = write_dicom(tmp_path / "w.dcm", np.arange(256).reshape(16, 16), window=(100, 200)).read_bytes()
    tag = b"\x28\x00\x51\x10"  # (0028,1051) Window Width, explicit VR little endian
    at = data.index(tag) + 4
    damaged = data[:at] + b"D\x00" + data[at + 2 :]
    with pytest.raises(ImageDecodeError, match="damaged"):
        read_image_bytes(damaged, name="w")
