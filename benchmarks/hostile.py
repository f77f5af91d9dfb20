"""Hostile inputs (issue 29), measured: what each reproducer adds to the peak resident memory (VmHWM) of a process
that is already up — the Recognize page (Streamlit's AppTest), the CLI, the HTTP API (FastAPI's TestClient) — and
what refusing the hostile detectors and parsing the hostile box files takes. Each figure comes from a fresh child
process. Run:  python -m benchmarks.hostile   (about a quarter of an hour on 2 cores)
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests.hostile_files import added_peak_mb, import_hostile_detector, near_limit_images

IMAGES = ["one-bit.gif", "two-colour.gif", "grey-16-bit.png", "rgba.webp"]
TWO_AT_ONCE = ["two-colour.gif", "other-colours.gif"]
TIMED = "import time\n_start = time.perf_counter()\n"
SECONDS = "\nprint('SECONDS', time.perf_counter() - _start)\n"

DECODE_SETUP = "from shelf.ingest.images import ImageError, decode_image\n"
DECODE = """
for path in {paths!r}:
    try:
        decoded = decode_image(open(path, "rb").read(), path)
        print("OUTCOME", "decoded", decoded.image.size)
    except ImageError as exc:
        print("OUTCOME", exc.problem[:70])
    decoded = None
"""

FRESH = """
import os, tempfile
os.environ["SHELF_DATA_DIR"] = tempfile.mkdtemp()  # a store of its own: each photo is new to it
"""
WARM_UP = FRESH + """
from tests.hostile_files import png_bytes
first = os.path.join(os.environ["SHELF_DATA_DIR"], "first.png")
open(first, "wb").write(png_bytes())
"""
CLI_SETUP = WARM_UP + """
from shelf.serving.cli import main
main(["recognize", first])  # the model loaded, a first photo classified and stored
"""
CLI = 'print("OUTCOME exit status", main(["recognize", *{paths!r}]))'

API_SETUP = FRESH + """
import io, threading
from fastapi.testclient import TestClient
from PIL import Image
from shelf.recognition import model
from shelf.serving import api
loaded, _ = model.load_model()
client = TestClient(api.create_app(api.ApiSettings(local=True), loaded))
client.__enter__()
photo = io.BytesIO()
Image.effect_noise((4000, 3000), 60).convert("RGB").save(photo, "JPEG")  # a server that has seen a 12 MP photo
client.post("/v1/photos", files={"photo": ("12mp.jpg", photo.getvalue())})
"""
API = """
def post(path):
    answer = client.post("/v1/photos", files={{"photo": (path.rsplit("/", 1)[-1], open(path, "rb").read())}})
    print("OUTCOME", answer.status_code, "" if answer.status_code < 300 else answer.json()["detail"][:60])
threads = [threading.Thread(target=post, args=(path,)) for path in {paths!r}]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""

APP_SETUP = WARM_UP + """
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("streamlit_app.py", default_timeout=600)
at.run()
at.switch_page("pages/recognize.py").run()

def recognise(files):
    at.file_uploader(key="uploads").set_value(files).run()
    at.button(key="recognize").click().run()
    return at

recognise([("first.png", open(first, "rb").read(), "image/png")])  # the model loaded, a first photo classified
"""
APP = """
at = recognise([(path.rsplit("/", 1)[-1], open(path, "rb").read(), "application/octet-stream") for path in {paths!r}])
print("OUTCOME", "exception" if at.exception else f"{{len(at.session_state['results'])}} result(s)",
      [r.error[:60] for r in at.session_state["results"] if r.error])
"""

WHERE = {"decode_image": (DECODE_SETUP, DECODE), "CLI recognize": (CLI_SETUP, CLI),
         "API POST /v1/photos": (API_SETUP, API), "Recognize page": (APP_SETUP, APP)}


def environment(folder: Path) -> None:
    """A data dir of its own and a generated (random-init) ResNet-18, as the tests use; eager torch (the decode
    is what is measured, not the backend)."""
    import torch
    from torchvision.models import resnet18
    torch.manual_seed(0)
    torch.save(resnet18().state_dict(), folder / "resnet18.pth")
    os.environ.update(SHELF_DATA_DIR=str(folder / "data"), SHELF_WEIGHTS=str(folder / "resnet18.pth"),
                      SHELF_ALLOW_UNVERIFIED_WEIGHTS="1", SHELF_OFFLINE="1", SHELF_BACKEND="eager")


def measure(setup: str, code: str) -> tuple[float, float, list[str]]:
    """(MB added to the peak, seconds, what happened) of `code` run after `setup` in a fresh process."""
    added, out = added_peak_mb(setup, TIMED + code + SECONDS, timeout=1800)
    lines = out.splitlines()
    seconds = float(next(line for line in lines if line.startswith("SECONDS")).split()[1])
    return added, seconds, [line.split(" ", 1)[1] for line in lines if line.startswith("OUTCOME")]


def images(folder: Path) -> None:
    reproducers = near_limit_images(folder / "images")
    print("Near-limit images: MB added to the peak (VmHWM) of a process that is up, and seconds")
    for where, (setup, code) in WHERE.items():
        for names in [[name] for name in IMAGES] + [TWO_AT_ONCE]:
            paths = [str(reproducers[name]) for name in names]
            added, seconds, outcome = measure(setup, code.format(paths=paths))
            label = " + ".join(names) + (" (at once)" if len(names) > 1 and "API" in where else "")
            print(f"  {where:<20} {label:<45} {added:6.0f} MB {seconds:6.1f} s   {'; '.join(map(str, outcome))}")


def detectors() -> None:
    print("Hostile detectors: seconds to refuse, MB added to the importing process, the trial process's own peak")
    for build, setup in [("expanding_detector()", ""), ("looping_detector()", ""),
                         ("expanding_at_run_time_detector()", ""),
                         ("slow_detector()", "detector.TRIAL_SECONDS = 1  # seconds of work, against a 1 s limit")]:
        said, added, trials, seconds = import_hostile_detector(build, timeout=600, setup=setup)
        trial = ", ".join(f"{peak:.0f} MB" if isinstance(peak, float) else peak for peak in trials) or "none"
        print(f"  {build + (' (1 s limit)' if setup else ''):<40} {seconds:5.1f} s {added:5.0f} MB  trial: {trial:<8} "
              f"{said[:100]}")


def box_files(folder: Path) -> None:
    csv = folder / "distinct-names.csv"
    csv.write_text("".join(f"i{i:07d}.jpg,1,1,2,2\n" for i in range(3_040_000)))  # 64 MB, a photo a line
    coco = folder / "empty-objects.json"
    coco.write_text('{"images": [], "annotations": [' + "{}," * 20_999_999 + "{}]}")  # 63 MB
    print("Box files: MB added to the peak while parsing, seconds")
    for path in (csv, coco):
        added, seconds, outcome = measure("from shelf.ingest.boxfiles import parse_box_file\n", f"""
data = open({str(path)!r}, "rb").read()
imported = parse_box_file(data, {path.name!r})
print("OUTCOME", len(imported.by_image), "photos,", imported.n_boxes, "boxes,", imported.n_problems, "problems")
""")
        size = path.stat().st_size / 1e6
        print(f"  {path.name:<22} {size:4.0f} MB file {added:6.0f} MB {seconds:6.1f} s   {outcome[0]}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        environment(folder)
        box_files(folder)
        detectors()
        images(folder)


if __name__ == "__main__":
    main()
