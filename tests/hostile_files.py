"""Hostile files, built small on disk: zips written byte by byte (so an entry can lie about its size, method, CRC
or encryption), deflate streams that inflate to gigabytes, images that decode to hundreds of megapixels, and a
corpus of every kind of bad file Shelf reads, for the CLI and the browser."""
from __future__ import annotations

import ast
import io
import json
import pickle
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_NAME = "![p](http:&#47;&#47;HOST&#47;x.png) &#x202E;gnp.jpg"  # Markdown image + entities in a name


@dataclass
class Entry:
    """One zip entry as written: `data` are the bytes stored (already compressed for method 8)."""

    name: str
    data: bytes
    method: int = 0  # 0 stored, 8 deflate, anything else: a method no reader supports
    size: int | None = None  # the uncompressed size declared; default len(data)
    crc: int | None = None  # default: the CRC of data (right for stored entries)
    flags: int = 0  # bit 0: encrypted


def zip_bytes(entries: list[Entry]) -> bytes:
    """A zip archive written field by field, believing whatever each entry declares."""
    out, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode()
        size = len(e.data) if e.size is None else e.size
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        header = (e.flags, e.method, 0, 0x21, crc, len(e.data), size, len(name))
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, *header, 0, 0, 0, 0, 0, len(out)) + name
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, *header, 0) + name + e.data
    start = len(out)
    return bytes(out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
                                             len(central), start, 0))


def deflated_zeros(n_bytes: int, chunk: int = 1 << 24) -> tuple[bytes, int]:
    """(raw deflate stream of n_bytes zeros, their CRC-32), in about a second for gigabytes: after a full flush
    the compressor starts afresh, so one compressed chunk repeated is a valid stream of many chunks."""
    assert n_bytes % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert block == compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = 0, bytes(chunk)
    for _ in range(n_bytes // chunk):
        crc = zlib.crc32(zeros, crc)
    return block * (n_bytes // chunk) + compressor.flush(), crc


def inflating_weights(checkpoint: bytes, inflated: int = 3 * 2**30) -> bytes:
    """A real torch.save checkpoint whose first tensor record is replaced by `inflated` bytes of zeros, deflated."""
    import zipfile
    archive = zipfile.ZipFile(io.BytesIO(checkpoint))
    entries = []
    for info in archive.infolist():
        if info.filename.endswith("/data/0"):
            data, crc = deflated_zeros(inflated)
            entries.append(Entry(info.filename, data, method=8, size=inflated, crc=crc))
        else:
            entries.append(Entry(info.filename, archive.read(info)))
    return zip_bytes(entries)


def one_colour_png(width: int, height: int, colour=(200, 40, 40)) -> bytes:
    """A PNG of width×height pixels that is a few kilobytes on disk (every row alike), built without decoding."""
    row = b"\x00" + bytes(colour) * width
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def png_bytes(size=(48, 36), colour=(30, 160, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


VMHWM = "int(__import__('re').search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])"


def peak_rss_mb(code: str, timeout: float = 300) -> tuple[float, str]:
    """Run `code` in a fresh Python; return (its peak resident memory in MB, its stdout), failing the test with the
    child's stderr if the child fails. The peak is the child's own VmHWM: getrusage's ru_maxrss survives exec and
    would report the (large) test process the child was forked from."""
    out = _child(code + f"\nprint('PEAK_KB', {VMHWM})\n", timeout)
    return _reported(out, "PEAK_KB") / 1024, out


def added_peak_mb(setup: str, code: str, timeout: float = 300) -> tuple[float, str]:
    """Run `setup` then `code` in a fresh Python; return (how many MB `code` raised its peak resident memory by,
    its stdout): what a server that has done `setup` (imports, a model, a first photo) takes on top for `code`."""
    out = _child(f"{setup}\n_base_kb = {VMHWM}\n{code}\nprint('ADDED_KB', {VMHWM} - _base_kb)\n", timeout)
    return _reported(out, "ADDED_KB") / 1024, out


def _child(script: str, timeout: float) -> str:
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _reported(out: str, key: str) -> int:
    return int(next(line for line in out.splitlines() if line.startswith(key)).split()[1])


IMPORTING = """
import re, subprocess, time, types
from shelf.recognition import detector
from tests import detectors
trials = []

def watched(args, **kwargs):  # the trial run, made to tell its own peak (VmHWM) on stderr as it ends
    args = [*args[:-2], args[-2] + "\\nimport sys\\nprint(open('/proc/self/status').read(), file=sys.stderr)", args[-1]]
    done = subprocess.run(args, **kwargs)
    peak = re.search(r"VmHWM:\\s+(\\d+)", done.stderr.decode())
    trials.append(int(peak[1]) / 1024 if peak else "no report")
    return done
detector.subprocess = types.SimpleNamespace(run=watched, TimeoutExpired=subprocess.TimeoutExpired)
"""
IMPORT_IT = """
start = time.perf_counter()
try:
    detector.import_detector(data, "hostile.onnx")
    print("IMPORTED")
except detector.DetectorError as exc:
    print("REFUSED", exc)
print("SECONDS", time.perf_counter() - start)
print("TRIALS", trials)
"""


def import_hostile_detector(build: str, *, timeout: float = 120, setup: str = "") -> tuple[str, float, list, float]:
    """(what importing the detector tests.detectors.`build` made Shelf say, MB it added to the importing process's
    peak, the peak in MB of each trial run, seconds), in a child process that a hang past `timeout` seconds fails."""
    added, out = added_peak_mb(f"{IMPORTING}{setup}\ndata = detectors.{build}\n", IMPORT_IT, timeout=timeout)
    lines = out.splitlines()
    said = next(line for line in lines if line.startswith(("REFUSED", "IMPORTED")))
    trials = ast.literal_eval(next(line for line in lines if line.startswith("TRIALS")).split(" ", 1)[1])
    return said, added, trials, _reported_float(lines, "SECONDS")


def _reported_float(lines: list[str], key: str) -> float:
    return float(next(line for line in lines if line.startswith(key)).split()[1])


def near_limit_images(folder: Path) -> dict[str, Path]:
    """Files of a few kilobytes that decode to about 120 MP, the pixel limit (issue 29): a 1-bit GIF, two two-colour
    GIFs (palettes that are not grey: Pillow keeps them as P, not L), a 16-bit grey PNG, and an RGBA WebP as wide
    as WebP goes."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in ("one-bit.gif", "two-colour.gif", "other-colours.gif",
                                              "grey-16-bit.png", "rgba.webp")}
    Image.new("1", (12000, 10000), 1).save(paths["one-bit.gif"])
    for name, palette in [("two-colour.gif", [255, 0, 0, 0, 0, 255]), ("other-colours.gif", [0, 200, 0, 200, 0, 9])]:
        image = Image.new("P", (12000, 10000), 1)
        image.putpalette(palette)
        image.save(paths[name])
    Image.new("I;16", (12000, 10000), 40000).save(paths["grey-16-bit.png"])
    Image.new("RGBA", (16383, 7300), (10, 200, 30, 128)).save(paths["rgba.webp"], lossless=True)
    return paths


class _Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def corpus(folder: Path, checkpoint: bytes) -> dict[str, list[Path]]:
    """Every kind of hostile file, by what reads it: images, box files, weights files, labelled sets."""
    folder.mkdir(parents=True, exist_ok=True)

    def put(name: str, data: bytes | str) -> Path:
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    png = png_bytes()
    claims_bomb = bytearray(png)
    claims_bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    claims_bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(claims_bomb[12:29])))
    sparse = folder / "three-gigabytes.jpg"
    with open(sparse, "wb") as handle:
        handle.truncate(3 * 10**9)  # sparse: nothing on disk, 3 GB to whoever reads it whole
    images = [put("empty.jpg", b""), put("notes.jpg", "not a photo"), put("truncated.png", png[:60]),
              put("claims-10-gigapixels.png", bytes(claims_bomb)), put("postscript.jpg", "%!PS-Adobe-3.0 EPSF-3.0\n"),
              put("vector.png", '<svg xmlns="http://www.w3.org/2000/svg"><image href="http://HOST/x.png"/></svg>'),
              put(HOSTILE_NAME, b"\xff\xd8\xff\xe0 not really"), sparse, folder / "missing.jpg"]

    coco = {"images": [{"id": 1, "file_name": "p.png", "width": 48, "height": 36}], "categories": []}
    boxes = [
        put("deep.json", "[" * 100_000 + "]" * 100_000),
        put("digits.json", '{"images": [], "annotations": [{"image_id": 1, "bbox": [' + "9" * 5000 + ", 0, 1, 1]}]}"),
        put("big-integers.json", json.dumps({**coco, "annotations": [
            {"id": 1, "image_id": 1, "bbox": [10**400, 0, 10**309, 1]}]})),
        put("overflow.json", json.dumps({**coco, "annotations": [{"id": 1, "image_id": 1,
                                                                   "bbox": [1e308, 0, 1e308, 5]}]})),
        put("tiny-width.json", json.dumps({**coco, "images": [{"id": 1, "file_name": "p.png", "width": 1e-310,
                                                               "height": 36}],
                                           "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 1, 5, 5]}]})),
        put("tiny-width.csv", "p.png,1,1,5,5,object,1e-310,36\n"),
        put("binary.csv", bytes(range(256)) * 4),
        put("not-coco.json", "[]"),
        put("million-boxes.txt", "0 0.5 0.5 0.1 0.1\n" * 1_000_000),
        sparse,
    ]

    zipped = io.BytesIO()
    import zipfile
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": _Exploit()}))
    weights = [
        put("inflating.pth", inflating_weights(checkpoint)),
        put("pickle.pth", pickle.dumps({"fc.weight": _Exploit()})),
        put("pickle-in-zip.pth", zipped.getvalue()),
        put("model.safetensors.pth", struct.pack("<Q", 30) + b'{"__metadata__": {"a": "b"}}  ' + bytes(64)),
        put("garbage.pth", "PK\x03\x04 not really a zip"),
        sparse,
    ]

    zeros, crc = deflated_zeros(960 * 2**20)
    labelled = [
        put("encrypted.zip", zip_bytes([Entry("Cola/a.png", png, flags=1)])),
        put("unsupported-method.zip", zip_bytes([Entry("Cola/a.png", png, method=99)])),
        put("bad-crc.zip", zip_bytes([Entry("Cola/a.png", png, crc=1234)])),
        put("inflates-to-960MiB.zip", zip_bytes([Entry("Cola/a.png", zeros, method=8, size=960 * 2**20, crc=crc)])),
        put("lies-about-its-size.zip", zip_bytes([Entry("Cola/a.png", zeros, method=8, size=1000, crc=crc)])),
        put("not-a-zip.zip", "PK\x05\x06 nope"),
        put("binary-labels.csv", bytes(range(256)) * 4),
    ]
    return {"images": images, "boxes": boxes, "weights": weights, "labelled": labelled}
