import io
import tarfile
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from svd.archive import maps_from_archive, natural_key, read_archive
from svd.errors import InputError
from svd.fetch import read_url


def load_depth_maps(url: str, width: int, height: int) -> np.ndarray:
    """The maps of the archive at `url`, fitted as a run fits them."""
    return maps_from_archive(read_url(url, "control_maps_data_url"), width, height)


def png(value: int, size=(16, 8), mode="L") -> bytes:
    buf = io.BytesIO()
    if mode == "I;16":
        Image.fromarray(np.full(size[::-1], value, np.uint16)).save(buf, "PNG")
    elif mode == "RGBA":
        Image.new("RGBA", size, (value, value, value, 10)).save(buf, "PNG")
    elif mode == "P":
        Image.new("L", size, value).convert("P").save(buf, "PNG")
    else:
        Image.new(mode, size, value if mode == "L" else (value,) * 3).save(buf, "PNG")
    return buf.getvalue()


def make_zip(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def make_tar(files: dict[str, bytes], mode="w", links=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            t.addfile(info)
    return buf.getvalue()


def save(tmp_path, data: bytes, name="maps.bin") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def values(maps: np.ndarray) -> list[int]:
    return [round(float(m.mean()) * 255) for m in maps]


def test_natural_order():
    names = ["10.png", "9.png", "frame_2.png", "frame_10.png", "1.png"]
    assert sorted(names, key=natural_key) == [
        "1.png",
        "9.png",
        "10.png",
        "frame_2.png",
        "frame_10.png",
    ]


@pytest.mark.parametrize("kind", ["zip", "tar", "tgz"])
def test_formats_are_detected_by_content_and_ordered(tmp_path, kind):
    files = {"maps/10.png": png(100), "maps/9.png": png(90), "maps/1.png": png(10)}
    data = {
        "zip": lambda: make_zip(files),
        "tar": lambda: make_tar(files),
        "tgz": lambda: make_tar(files, "w:gz"),
    }[kind]()
    maps = load_depth_maps(save(tmp_path, data, "no-extension"), 32, 16)
    assert maps.shape == (3, 16, 32) and maps.dtype == np.float32
    assert values(maps) == [10, 90, 100]


def test_junk_is_ignored_and_extensions_any_case(tmp_path):
    files = {
        "__MACOSX/._1.png": b"junk",
        ".hidden.png": png(5),
        "notes.txt": b"hello",
        "depth/.DS_Store": b"x",
        "depth/2.JPEG": png(200, mode="RGB"),
        "depth/1.Png": png(100),
        "depth/3.tif": png(50),
        "depth/4.gif": png(60),
        "depth/5.bmp": png(70),
    }
    entries = read_archive(make_zip(files))
    assert [e.name for e in entries] == [
        "depth/1.Png",
        "depth/2.JPEG",
        "depth/3.tif",
        "depth/4.gif",
        "depth/5.bmp",
    ]


def test_sizes_and_modes_become_one_channel(tmp_path):
    files = {
        "1.png": png(128, (64, 64)),
        "2.png": png(65535, (8, 40), mode="I;16"),
        "3.png": png(255, (30, 20), mode="RGB"),
        "4.png": png(51, (20, 20), mode="RGBA"),
        "5.png": png(102, (20, 20), mode="P"),
    }
    maps = load_depth_maps(save(tmp_path, make_zip(files)), 24, 16)
    assert maps.shape == (5, 16, 24)
    assert values(maps) == [128, 255, 255, 51, 102]
    assert 0.0 <= maps.min() and maps.max() <= 1.0


def test_maps_are_fitted_like_the_picture(tmp_path):
    img = np.zeros((10, 30), np.uint8)
    img[:, 10:20] = 255  # the middle third is white
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    maps = load_depth_maps(save(tmp_path, make_zip({"1.png": buf.getvalue()})), 20, 20)
    assert maps[0, :, 3:17].min() > 0.9  # the centre crop keeps the middle


@pytest.mark.parametrize(
    "name", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/evil.png", "..\\evil.png"]
)
def test_unsafe_paths_are_refused(tmp_path, name):
    for data in (make_zip({name: png(1)}), make_tar({name: png(1)})):
        with pytest.raises(InputError, match="control_maps_data_url: .*unsafe path"):
            read_archive(data)
    assert not (tmp_path.parent / "evil.png").exists()


def test_links_are_ignored():
    data = make_tar(
        {"2.png": png(20)},
        links=[("1.png", "/etc/passwd", tarfile.SYMTYPE), ("3.png", "2.png", tarfile.LNKTYPE)],
    )
    assert [e.name for e in read_archive(data)] == ["2.png"]
    with pytest.raises(InputError, match="no images"):
        read_archive(make_tar({}, links=[("1.png", "/etc/passwd", tarfile.SYMTYPE)]))


def test_zip_symlink_entries_are_ignored():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("2.png", png(20))
        link = zipfile.ZipInfo("1.png")
        link.external_attr = (0o120777) << 16
        z.writestr(link, "/etc/passwd")
    assert [e.name for e in read_archive(buf.getvalue())] == ["2.png"]


def test_zip_bomb_is_refused():
    bomb = make_zip({"1.png": b"\0" * 50_000_000})
    assert len(bomb) < 100_000
    t = time.perf_counter()
    with pytest.raises(InputError, match="zip bomb"):
        read_archive(bomb)
    assert time.perf_counter() - t < 5


def test_too_many_entries():
    files = {f"{i}.txt": b"" for i in range(10_000)}
    for data in (make_zip(files, zipfile.ZIP_STORED), make_tar(files)):
        with pytest.raises(InputError, match="over 1000 entries"):
            read_archive(data)


def test_too_many_maps():
    with pytest.raises(InputError, match="65 maps; at most 64"):
        read_archive(make_zip({f"{i}.png": png(i) for i in range(65)}))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"just some bytes", "not a zip, tar or tar.gz"),
        (b"", "not a zip, tar or tar.gz"),
        (make_zip({"readme.txt": b"hi"}), "no images"),
        (make_zip({"1.png": b"not really a png"}), "'1.png' is not a readable image"),
    ],
    ids=["bytes", "empty", "no-images", "unreadable"],  # a zip's bytes hold its time
)
def test_bad_archives_name_the_field(data, message):
    with pytest.raises(InputError) as e:
        read_archive(data) if b"1.png" not in data else load_maps(data)
    assert e.value.field == "control_maps_data_url" and message in e.value.message


def load_maps(data: bytes):
    from svd.archive import decode_depth

    return [decode_depth(e) for e in read_archive(data)]


def test_data_uri_archive():
    import base64

    uri = "data:application/zip;base64," + base64.b64encode(make_zip({"1.png": png(7)})).decode()
    assert values(load_depth_maps(uri, 8, 8)) == [7]
