"""Backends: ONNX Runtime fp32 is faithful to torchvision; int8 fast mode is correct, calibrated, cached, opt-in."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights, resnet18

from shelf.ingest.images import decode_image
from shelf.ingest.regions import Box
from shelf.recognition import backends, model
from shelf.recognition.classify import classify_images
from shelf.recognition.inputs import preprocessing
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from tests.conftest import REAL_PHOTOS, skimage_photo
from tests.synthetic import make_product, shelf_jpeg


@pytest.fixture(scope="module")
def onnx_loaded(loaded, tmp_path_factory):
    import os
    os.environ["SHELF_DATA_DIR"] = str(tmp_path_factory.mktemp("onnx"))
    try:
        return dataclasses.replace(loaded, backend=backends.build_backend("onnx", loaded.model,
                                                                           loaded.weights.sha256))
    finally:
        del os.environ["SHELF_DATA_DIR"]


def test_onnx_fp32_matches_the_torchvision_reference_on_real_photos(onnx_loaded, weights_file, photo_bytes):
    net = resnet18()
    net.load_state_dict(torch.load(weights_file, weights_only=True))
    net.eval()
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    ours = classify_images(onnx_loaded, [decode_image(d, n).image for n, d in photo_bytes.items()], top_k=5)
    for name, result in zip(REAL_PHOTOS, ours):
        with torch.no_grad():
            expected = net(transform(Image.open(skimage_photo(name)).convert("RGB"))[None]).softmax(1)[0]
        probabilities = torch.from_numpy(result.probabilities)
        torch.testing.assert_close(probabilities, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(probabilities.log(), expected.log(), atol=1e-4, rtol=0)
        assert result.embedding.shape == (512,)
    assert onnx_loaded.backend_name == "onnxruntime fp32"


def test_converted_models_are_cached_per_weights(loaded, monkeypatch):
    first = backends.build_backend("onnx", loaded.model, loaded.weights.sha256)
    assert first.path.is_file() and loaded.weights.sha256[:16] in str(first.path)
    monkeypatch.setattr(backends, "export_onnx", lambda *a: pytest.fail("converted again"))
    assert backends.build_backend("onnx", loaded.model, loaded.weights.sha256).path == first.path


@pytest.fixture(scope="module")
def calibration():
    transform = preprocessing()
    return [torch.stack([transform(make_product(s, 40 + s)) for s in range(24)])]


def test_int8_fast_mode_is_correct_and_close_to_fp32(loaded, calibration):
    fast = dataclasses.replace(loaded, backend=backends.build_backend("int8", loaded.model, loaded.weights.sha256,
                                                                      calibration))
    assert fast.backend_name == "onnxruntime int8 (fast mode)" and "int8" in fast.backend.path.name
    images = [make_product(s, 80 + s) for s in range(24)]
    fp32, int8 = classify_images(loaded, images, top_k=3), classify_images(fast, images, top_k=3)
    for a, b in zip(fp32, int8):
        assert abs(float(b.probabilities.sum()) - 1) < 1e-4 and b.embedding.shape == (512,)
        assert [p.rank for p in b.predictions] == [1, 2, 3]
    expected = np.stack([r.probabilities for r in fp32])
    actual = np.stack([r.probabilities for r in int8])
    diff, _ = backends.agreement(expected, actual)
    # Untrained weights give near-uniform probabilities (~1e-3), so top-1 flips are cheap here; the benchmark
    # measures agreement on a trained model. Here: the int8 model computes the same function, coarsely.
    assert 0 < diff < 5e-3
    embeddings = [np.corrcoef(a.embedding, b.embedding)[0, 1] for a, b in zip(fp32, int8)]
    assert min(embeddings) > 0.9


@pytest.mark.parametrize("amx", [False, True], ids=["without AMX", "with AMX"])
def test_fast_mode_runs_a_copy_of_the_int8_model_computing_the_very_same_numbers(
        amx, loaded, calibration, photo_bytes, tmp_path, monkeypatch):
    import os

    import onnx

    from shelf.recognition.inputs import model_input
    fp32 = backends.build_backend("onnx", loaded.model, loaded.weights.sha256).path
    folder = tmp_path / "models"
    int8 = backends.quantize_int8(fp32, calibration, folder / backends.INT8_FILE)
    monkeypatch.setattr(backends, "has_amx_int8", lambda: amx)
    derived = backends.int8_for_this_cpu(int8)
    assert derived == folder / (backends.INT8_AMX_FILE if amx else backends.INT8_RUN_FILE)
    assert sorted(p.name for p in folder.iterdir()) == sorted([backends.INT8_FILE, derived.name])  # no partial
    assert backends.shift_weight_zero_points(onnx.load(str(int8))) == 20  # ResNet-18's 20 convolutions, not the Gemm
    assert backends.shift_weight_zero_points(onnx.load(str(derived))) == (0 if amx else 20)  # shifted for AMX only
    photos = [decode_image(data, name).image for name, data in photo_bytes.items()]
    crops = [photo.crop((x, y, x + w, y + h)) for photo in photos for x, y, w, h in ((0, 0, 97, 180), (40, 9, 300, 61))]
    inputs = np.stack([model_input(image) for image in photos + crops]
                      + [np.full((224, 224, 3), level, np.uint8) for level in (0, 255)])  # the table's two ends
    as_quantised, as_run = backends.OnnxBackend("int8", int8), backends.OnnxBackend("int8", derived)
    shape, dtype = ((len(inputs), 3, 224, 224), np.float32) if amx else ((len(inputs), 12, 115, 115), np.uint8)
    assert (as_run.prepare(inputs).shape, as_run.prepare(inputs).dtype) == (shape, dtype)  # quantised bytes without
    # AMX; with it, the model's own input: the rewrite measured no faster there
    for expected, actual in zip(as_quantised.run(as_quantised.prepare(inputs)), as_run.run(as_run.prepare(inputs))):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)  # pooled features and logits: the same numbers
    assert as_run.prepare(inputs[:0]).shape == (0, *shape[1:])
    made = derived.stat().st_mtime_ns
    assert backends.int8_for_this_cpu(int8) == derived and derived.stat().st_mtime_ns == made  # derived once
    os.utime(int8, ns=(made + 10**9, made + 10**9))  # re-calibrated since: derived again
    backends.int8_for_this_cpu(int8)
    assert derived.stat().st_mtime_ns > made


def test_a_model_fast_mode_did_not_quantise_is_run_as_it_is(loaded, tmp_path, monkeypatch):
    fp32 = backends.build_backend("onnx", loaded.model, loaded.weights.sha256).path  # no QuantizeLinear to take over
    import onnx
    model = onnx.load(str(fp32))
    assert not backends.quantised_input_copy(model) and model == onnx.load(str(fp32))
    monkeypatch.setattr(backends, "has_amx_int8", lambda: False)
    assert backends.int8_for_this_cpu(fp32) == fp32 and not (fp32.parent / backends.INT8_RUN_FILE).exists()


def test_amx_is_read_from_the_cpu_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "amx_granted", lambda: True)  # what the kernel says is tests/test_no_amx.py's
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n")
    assert backends.has_amx_int8(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse avx512f avx512_vnni amx_bf16 amx_tile\n")
    assert not backends.has_amx_int8(cpuinfo)
    assert not backends.has_amx_int8(tmp_path / "missing")


def test_fast_mode_needs_calibration_and_is_never_silent(loaded, engine):
    with pytest.raises(backends.BackendError, match="calibration"):
        backends.build_backend("int8", loaded.model, loaded.weights.sha256, None)
    with pytest.raises(backends.BackendError, match="at least 16 regions"):
        backends.with_backend(loaded, "int8", engine)  # an empty store has nothing to calibrate on


def test_fast_mode_from_stored_crops_is_recorded_in_provenance(loaded, engine):
    recognize(loaded, engine, [Upload("shelf.jpg", shelf_jpeg(3, 1200, 900)[0])], store.Context(),
              region_mode="grid:4x5")
    fast = backends.with_backend(loaded, "int8", engine)
    assert fast.backend.kind == "int8"
    recognize(fast, engine, [Upload("shelf2.jpg", shelf_jpeg(4, 1200, 900)[0])], store.Context(),
              region_mode="grid:2x2")
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.runs.c.backend).order_by(store.runs.c.id)).scalars().all() == [
            "torch eager fp32", "onnxruntime int8 (fast mode)"]
    report = backends.check_fidelity(fast, engine)
    assert report["crops"] == 24 and report["backend"] == "onnxruntime int8 (fast mode)"
    faithful = backends.check_fidelity(backends.with_backend(loaded, "onnx"), engine)
    assert faithful["max_prob_diff"] < 1e-4 and faithful["top1_agreement"] == 1.0


def test_backend_choice_precedence(engine, monkeypatch):
    assert backends.chosen_backend(engine) == "onnx"  # faithful by default
    store.set_setting(engine, backends.BACKEND_SETTING, "int8")
    assert backends.chosen_backend(engine) == "int8"
    monkeypatch.setenv("SHELF_BACKEND", "eager")
    assert backends.chosen_backend(engine) == "eager"
    monkeypatch.setenv("SHELF_BACKEND", "warp-drive")
    assert backends.chosen_backend(engine) == "int8"


def test_a_missing_onnxruntime_falls_back_to_eager_for_faithful_modes(loaded, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    assert backends.with_backend(loaded, "onnx").backend.kind == "eager"


def test_fast_mode_is_quantised_once_and_recalibrated_only_on_request(loaded, engine, monkeypatch):
    recognize(loaded, engine, [Upload("a.jpg", shelf_jpeg(3, 1200, 900)[0])], store.Context(), region_mode="grid:4x5")
    first = backends.with_backend(loaded, "int8", engine).backend.path
    assert backends.frozen_calibration(loaded.weights.sha256) | {"taken_at": ""} == {
        "crops": 20, "photos": 1, "source": "stored regions", "taken_at": "",
        "sha256": backends.frozen_calibration(loaded.weights.sha256)["sha256"]}
    built = first.stat().st_mtime_ns
    recognize(loaded, engine, [Upload("b.jpg", shelf_jpeg(4, 1200, 900)[0])], store.Context(), region_mode="grid:4x5")
    with monkeypatch.context() as m:  # the store grew; a new load (as in a new process) must not quantise again
        m.setattr(backends, "quantize_int8", lambda *a: pytest.fail("quantised again"))
        m.setattr(backends, "stored_crops", lambda *a, **k: pytest.fail("calibration taken again"))
        again = backends.with_backend(model.load_model()[0], "int8", engine)
    assert again.backend.path == first and first.stat().st_mtime_ns == built
    backends.with_backend(loaded, "int8", engine, recalibrate=True)  # only on request
    assert backends.frozen_calibration(loaded.weights.sha256)["crops"] == 40
    assert backends.frozen_calibration(loaded.weights.sha256)["photos"] == 2
    assert first.stat().st_mtime_ns != built


def test_a_new_process_loads_the_cached_fast_model_without_converting(loaded, engine, tmp_path):
    """The CLI in a fresh process: the cached int8 model as it is — no quantisation, no ONNX export, and none of
    the heavy imports a conversion or torchvision's package import would bring (torch._dynamo: a second)."""
    import os
    import subprocess
    import sys
    photo = tmp_path / "c.jpg"
    photo.write_bytes(shelf_jpeg(5, 1200, 900)[0])
    loaded = model.load_model()[0]  # the first process: checks the weights file (and remembers it passed)
    recognize(loaded, engine, [Upload("a.jpg", shelf_jpeg(3, 1200, 900)[0])], store.Context(), region_mode="grid:4x5")
    int8 = backends.with_backend(loaded, "int8", engine).backend.path
    built = int8.stat().st_mtime_ns
    code = ("import sys\nfrom shelf.serving.cli import main\n"
            f"code = main(['recognize', {str(photo)!r}, '--regions', 'grid:2x3'])\n"
            "print(code, sorted(m for m in ('torchvision', 'torch._dynamo', 'onnx', 'onnxruntime.quantization', "
            "'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "SHELF_BACKEND": "int8"}, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fast mode (int8) is on" in done.stderr
    assert "photo 2, 6 region(s)" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "0 []"
    assert int8.stat().st_mtime_ns == built


REAL_SHELVES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-shelves"


def test_jpeg_draft_decoding_is_for_fast_mode_only(loaded, engine, calibration):
    """On real shelf photos (and rocket.jpg), decoding at a reduced JPEG scale (M/8) moves even an untrained model's
    probabilities by more than the faithful bound of 1e-4 (measured: up to 2.3e-4 for whole photos, 7.0e-4 for
    grid:2x2 crops), so the faithful backends always decode the full photo; fast mode drafts, cutting the same
    regions (in the photo's own pixels) from the smaller image."""
    from shelf.recognition import stages
    from shelf.recognition.classify import classify_inputs
    from tests.conftest import require_service
    paths = sorted(REAL_SHELVES.glob("*.JPG")) + [skimage_photo("rocket.jpg")]
    require_service(len(paths) > 1, f"real shelf photos in {REAL_SHELVES}")
    drafted, largest = 0, 0.0
    for path in paths:
        data = path.read_bytes()
        for mode in ("whole", "grid:2x2"):
            full = stages.decode_for(data, path.name, stages.Settings("", mode, backend="onnx"))
            fast = stages.decode_for(data, path.name, stages.Settings("", mode, backend="int8"))
            assert full.full_size is None and (fast.width, fast.height) == full.image.size
            if fast.full_size is None:  # too small for a region to keep DRAFT_MIN_SIDE px (and the preview 1280)
                continue
            drafted += 1
            boxes = stages.photo_regions(stages.parse_region_mode(mode), full.image, path.name, None).boxes
            exact = stages.region_inputs(full, boxes, stages.Settings("", mode, backend="onnx"))
            reduced = stages.region_inputs(fast, boxes, stages.Settings("", mode, backend="int8"))
            # the same regions, a little softer (6 levels when the crop's geometry came from the rounded box)
            assert np.abs(exact.astype(int) - reduced).mean() < 1
            diff, _ = backends.agreement(classify_inputs(loaded, exact).probabilities,
                                         classify_inputs(loaded, reduced).probabilities)
            largest = max(largest, diff)
    assert drafted >= 4 and largest > 1e-4  # why faithful mode never drafts
    big = next(p for p in paths if stages.decode_for(p.read_bytes(), p.name, stages.Settings(
        "", "grid:2x2", backend="int8")).full_size)
    fast = dataclasses.replace(loaded, backend=backends.build_backend("int8", loaded.model, loaded.weights.sha256,
                                                                      calibration))
    result, = recognize(fast, engine, [Upload(big.name, big.read_bytes())], store.Context(), region_mode="grid:2x2")
    width, height = Image.open(big).size
    assert result.size == (width, height) and result.regions[-1].box.as_tuple[2:] == (width, height)


def test_fast_mode_cuts_regions_straight_from_the_photo(loaded):
    """Fast mode resizes only the part of each region the centre crop keeps, straight from the photo: on real shelf
    photos its inputs are torchvision's but for rare one-level differences, and the probabilities barely move; the
    faithful backends keep model_input (tests/test_classify.py: the reference transform's very tensor)."""
    from shelf.recognition import stages
    from shelf.recognition.classify import classify_inputs
    from shelf.recognition.inputs import model_input
    from tests.conftest import require_service
    paths = sorted(REAL_SHELVES.glob("*.JPG"))[:3]
    require_service(bool(paths), f"real shelf photos in {REAL_SHELVES}")
    for path in paths:
        decoded = stages.decode_for(path.read_bytes(), path.name, stages.Settings("", "grid:3x4", backend="onnx"))
        boxes = stages.photo_regions(stages.parse_region_mode("grid:3x4"), decoded.image, path.name, None).boxes
        boxes.append(Box(5, 7, 5 + 150, 7 + 90))  # smaller than the model's input: blown up
        exact = np.stack([model_input(decoded.image.crop(b.as_tuple)) for b in boxes])
        assert np.array_equal(stages.region_inputs(decoded, boxes, stages.Settings("", "grid:3x4")), exact)
        fast = stages.region_inputs(decoded, boxes, stages.Settings("", "grid:3x4", backend="int8"))
        differ = exact.astype(int) - fast
        assert np.abs(differ).max() <= 1 and np.count_nonzero(differ) < 0.002 * differ.size
        diff, agree = backends.agreement(classify_inputs(loaded, exact).probabilities,
                                         classify_inputs(loaded, fast).probabilities)
        assert diff < 1e-3 and agree == 1.0


def test_quantize_int8_makes_the_benchmarks_variants_with_one_thing_changed(loaded, calibration, tmp_path):
    """benchmarks/runtimes.py measures fast mode's quantisation with one setting changed: that one, nothing else."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType
    fp32 = backends.build_backend("onnx", loaded.model, loaded.weights.sha256).path

    def quantised_weights(changes: dict) -> tuple[dict[str, tuple], str]:
        """{weight name: (weight dtype, scale shape)} of the quantised convolutions, and the stem's weight input."""
        graph = onnx.load(str(backends.quantize_int8(fp32, calibration, tmp_path / "int8.onnx", **changes))).graph
        constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        weights = {node.input[0]: (constants[node.input[0]].dtype, constants[node.input[1]].shape)
                   for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in constants
                   and constants[node.input[0]].ndim == 4}
        return weights, next(node.input[1] for node in graph.node if node.op_type == "Conv")

    shipped, stem = quantised_weights({})
    assert len(shipped) == 20 and {(dtype, len(shape)) for dtype, shape in shipped.values()} == {(np.dtype(np.int8), 1)}
    assert stem not in shipped and stem.endswith("_DequantizeLinear_Output")  # per channel, stem included
    kept_fp32, stem = quantised_weights({"stem_fp32": True})
    assert kept_fp32 == {name: shipped[name] for name in list(shipped)[1:]} and "Dequantize" not in stem
    per_tensor, _ = quantised_weights({"per_channel": False})
    assert per_tensor.keys() == shipped.keys() and {shape for _, shape in per_tensor.values()} == {()}
    unsigned, _ = quantised_weights({"weight_type": QuantType.QUInt8})
    assert {dtype for dtype, _ in unsigned.values()} == {np.dtype(np.uint8)}


def test_a_12_mp_grid_photo_is_decoded_at_half_size_in_fast_mode_only():
    """grid:5x8 cells of a 4000×3000 photo keep 250 px at 4/8 (≥ DRAFT_MIN_SIDE: libjpeg-turbo's SIMD 4/8 scale
    instead of the 5/8 one, which has none); the faithful backends decode it whole."""
    from shelf.recognition import stages
    from tests.synthetic import shelf_jpeg
    data = shelf_jpeg(700, 4000, 3000)[0]
    fast = stages.decode_for(data, "shelf.jpg", stages.Settings("", "grid:5x8", backend="int8"))
    faithful = stages.decode_for(data, "shelf.jpg", stages.Settings("", "grid:5x8", backend="onnx"))
    assert fast.image.size == (2000, 1500) and (fast.width, fast.height) == (4000, 3000)
    assert faithful.image.size == (4000, 3000) and faithful.full_size is None
    finer = stages.decode_for(data, "shelf.jpg", stages.Settings("", "grid:5x9", backend="int8"))  # cells 444 px
    assert finer.image.size == (2500, 1875)  # 4/8 would keep 222 px: 5/8
