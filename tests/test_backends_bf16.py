"""Balanced mode (bf16): close to eager fp32, recorded in provenance, offered only where the CPU has AMX-BF16."""
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from shelf.recognition import backends
from shelf.recognition.classify import classify_inputs
from shelf.recognition.inputs import model_input
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from tests.conftest import require_service
from tests.synthetic import shelf_jpeg

REAL_PRODUCTS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-products"
AMX_XEON = frozenset({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
ZEN4 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})  # BF16 without tiles: slower than faithful there


def test_balanced_mode_is_close_to_eager_fp32_on_real_product_photos(loaded):
    """On the 96 GroceryStoreDataset photos the test checkpoint's probabilities moved by at most 2.1e-4 (top-1 the
    same on all); the bound leaves room for other kernels, and the floor says bf16 really ran (fp32: ~1e-7)."""
    paths = sorted(REAL_PRODUCTS.glob("*/*"))
    require_service(len(paths) >= 90, f"the real product photos in {REAL_PRODUCTS}")
    inputs = np.stack([model_input(Image.open(path).convert("RGB")) for path in paths])
    balanced = dataclasses.replace(loaded, backend=backends.build_backend("bf16", loaded.model,
                                                                          loaded.weights.sha256))
    assert balanced.backend.kind == "bf16" and balanced.backend_name == "torch bfloat16 (balanced)"
    reference, ours = classify_inputs(loaded, inputs), classify_inputs(balanced, inputs)
    assert ours.probabilities.shape == reference.probabilities.shape and ours.probabilities.dtype == np.float32
    assert ours.embeddings.shape == reference.embeddings.shape and ours.embeddings.dtype == np.float32
    diff, top1 = backends.agreement(reference.probabilities, ours.probabilities)
    assert 1e-6 < diff < 1e-3 and top1 >= 0.98
    assert min(np.corrcoef(a, b)[0, 1] for a, b in zip(reference.embeddings, ours.embeddings)) > 0.999
    assert next(loaded.model.parameters()).is_contiguous()  # the reference model was not made channels_last


def test_balanced_mode_is_recorded_in_provenance_and_checked_for_fidelity(loaded, engine):
    balanced = backends.with_backend(loaded, "bf16", engine)
    assert balanced.backend.kind == "bf16"
    recognize(balanced, engine, [Upload("shelf.jpg", shelf_jpeg(3, 1200, 900)[0])], store.Context(),
              region_mode="grid:4x5")
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.runs.c.backend)).scalars().all() == ["torch bfloat16 (balanced)"]
    report = backends.check_fidelity(balanced, engine)
    assert report["kind"] == "bf16" and report["crops"] == 20 and 0 < report["max_prob_diff"] < 1e-3


def test_balanced_mode_is_offered_only_where_bf16_runs_on_amx_tiles():
    assert "bf16" in backends.offered_backends(AMX_XEON)
    assert "bf16" not in backends.offered_backends(ZEN4)  # AVX512-BF16 alone measured slower than faithful
    assert backends.offered_backends(frozenset()) == ["eager", "onnx", "int8"]


def test_shelf_backend_bf16_without_amx_falls_back_with_a_warning(engine, monkeypatch, caplog):
    monkeypatch.setenv("SHELF_BACKEND", "bf16")
    assert backends.chosen_backend(engine, backends.offered_backends(AMX_XEON)) == "bf16"
    with caplog.at_level(logging.WARNING, logger=backends.log.name):
        assert backends.chosen_backend(engine, backends.offered_backends(ZEN4)) == backends.DEFAULT_BACKEND
    assert "SHELF_BACKEND=bf16 is not offered on this CPU" in caplog.text
    monkeypatch.delenv("SHELF_BACKEND")
    store.set_setting(engine, backends.BACKEND_SETTING, "bf16")  # saved by a server with AMX, read by one without
    assert backends.chosen_backend(engine, backends.offered_backends(ZEN4)) == backends.DEFAULT_BACKEND
    assert backends.chosen_backend(engine, backends.offered_backends(AMX_XEON)) == "bf16"


def test_the_home_page_offers_balanced_mode_only_on_a_cpu_with_amx_bf16(loaded, monkeypatch):
    from tests.test_app import start
    for flags, offered in ((AMX_XEON, True), (ZEN4, False)):
        monkeypatch.setattr(backends, "usable_cpu_flags", lambda flags=flags: flags)
        at = start()
        assert not at.exception, at.exception
        assert (backends.CHOICE_NAMES["bf16"] in at.radio(key="backend_choice").options) == offered


def test_balanced_mode_cannot_be_switched_on_where_it_is_not_offered(engine, monkeypatch):
    from shelf.access import Identity
    admin = Identity("ana@example.com", "admin", "ana@example.com", "oidc")
    monkeypatch.setattr(backends, "usable_cpu_flags", lambda: ZEN4)
    with pytest.raises(backends.BackendError, match="not offered on this CPU"):
        backends.switch_backend(engine, "bf16", by=admin)
    assert store.get_setting(engine, backends.BACKEND_SETTING) is None
    monkeypatch.setattr(backends, "usable_cpu_flags", lambda: AMX_XEON)
    backends.switch_backend(engine, "bf16", by=admin)
    assert store.get_setting(engine, backends.BACKEND_SETTING) == "bf16"
