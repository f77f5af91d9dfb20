"""recognize() decodes and cuts the next photo on its decode thread while the model classifies the current one
(issue 28: on two cores the photo work and the network overlap instead of taking turns). What a caller sees must
not change: the same results, in the uploads' order, each bad file its own message."""
import threading

import pytest

from shelf.recognition import stages
from shelf.recognition.pipeline import Upload, recognize
from shelf.storage import store
from tests.synthetic import shelf_jpeg

CONTEXT = store.Context("North", "3")


def _uploads() -> list[Upload]:
    return [Upload("a.jpg", shelf_jpeg(1, 800, 600)[0]), Upload("notes.jpg", b"not a photo"),
            Upload("b.jpg", shelf_jpeg(2, 800, 600)[0]), Upload("c.jpg", shelf_jpeg(3, 800, 600)[0])]


def test_the_next_photo_is_decoded_while_this_one_is_in_the_model(loaded, engine, monkeypatch):
    decoding = {}  # photo name → the thread that decoded it, set as its decoding starts
    started = {name: threading.Event() for name in ("a.jpg", "notes.jpg", "b.jpg", "c.jpg")}
    real_decode, real_classify = stages.decode_for, stages.Classifier.__call__

    def decode(data, name, settings):
        decoding[name] = threading.current_thread().name
        started[name].set()
        return real_decode(data, name, settings)

    overlapped = {}

    def classify(self, batch):
        (name,) = batch["name"]
        following = {"a.jpg": "notes.jpg", "b.jpg": "c.jpg"}.get(name)
        if following:  # the photo after this one is being decoded before this one's model run ends
            overlapped[name] = started[following].wait(timeout=20)
        return real_classify(self, batch)

    monkeypatch.setattr(stages, "decode_for", decode)
    monkeypatch.setattr(stages.Classifier, "__call__", classify)
    progress = []
    results = recognize(loaded, engine, _uploads(), CONTEXT, region_mode="grid:2x2",
                        on_progress=lambda done, total, name: progress.append((done, name)))
    assert overlapped == {"a.jpg": True, "b.jpg": True}
    assert all(thread.startswith("shelf-decode") for thread in decoding.values())
    assert progress == [(0, "a.jpg"), (1, "notes.jpg"), (2, "b.jpg"), (3, "c.jpg"), (4, "")]
    assert [r.name for r in results] == ["a.jpg", "notes.jpg", "b.jpg", "c.jpg"]
    assert [r.ok for r in results] == [True, False, True, True]
    assert "notes.jpg" in results[1].error
    assert store.counts(engine)["photos"] == 3


def test_results_equal_recognizing_one_photo_at_a_time(loaded, engine, tmp_path):
    together = recognize(loaded, engine, _uploads(), CONTEXT, region_mode="grid:2x2")
    alone_store = store.open_store(f"sqlite:///{tmp_path / 'alone.db'}")
    alone = [recognize(loaded, alone_store, [upload], CONTEXT, region_mode="grid:2x2")[0] for upload in _uploads()]
    for one, other in zip(together, alone):
        assert (one.name, one.ok, one.error, one.size) == (other.name, other.ok, other.error, other.size)
        assert [r.box for r in one.regions] == [r.box for r in other.regions]
        for mine, theirs in zip(one.regions, other.regions):
            assert [p.class_index for p in mine.predictions] == [p.class_index for p in theirs.predictions]
            assert [p.probability for p in mine.predictions] == pytest.approx(
                [p.probability for p in theirs.predictions], abs=1e-6)
        assert (one.preview is None) == (other.preview is None)
        if one.preview is not None:
            assert one.preview.tobytes() == other.preview.tobytes()


def test_a_photo_twice_in_one_batch_is_stored_once(loaded, engine):
    data = shelf_jpeg(4, 800, 600)[0]
    first, second = recognize(loaded, engine, [Upload("x.jpg", data), Upload("copy of x.jpg", data)], CONTEXT,
                              region_mode="grid:2x2")
    assert first.ok and second.ok and not first.already_stored and second.already_stored
    assert first.photo_id == second.photo_id
    assert [r.top1 for r in first.regions] == [r.top1 for r in second.regions]
    assert store.counts(engine)["photos"] == 1 and store.counts(engine)["regions"] == 4


def test_a_store_that_fails_for_one_photo_fails_only_that_photo(loaded, engine, monkeypatch):
    real_find = store.find_photo
    bad = shelf_jpeg(2, 800, 600)[0]

    def find(engine, sha256):
        if sha256 == stages.sha256_hex(bad):
            raise OSError("disk I/O error")
        return real_find(engine, sha256)

    monkeypatch.setattr(store, "find_photo", find)
    results = recognize(loaded, engine, [Upload("a.jpg", shelf_jpeg(1, 800, 600)[0]), Upload("b.jpg", bad),
                                         Upload("c.jpg", shelf_jpeg(3, 800, 600)[0])], CONTEXT, region_mode="grid:2x2")
    assert [r.ok for r in results] == [True, False, True]
    assert "b.jpg" in results[1].error and "disk I/O error" in results[1].error


def test_a_photos_bytes_are_kept_on_the_decode_thread_and_a_failed_write_is_tried_again(loaded, engine, monkeypatch):
    from shelf import config
    real_keep, written, refused = store.keep_photo_bytes, {}, []

    def keep(data, relative):
        if not refused:  # the first photo's early write fails (a full disk, say, that then frees up)
            refused.append(threading.current_thread().name)
            raise OSError("no space left on device")
        if not (config.data_dir() / relative).exists():
            written[relative] = threading.current_thread().name
        return real_keep(data, relative)

    monkeypatch.setattr(store, "keep_photo_bytes", keep)
    uploads = [u for u in _uploads() if u.name != "notes.jpg"]
    results = recognize(loaded, engine, uploads, CONTEXT, region_mode="grid:2x2")
    assert all(r.ok for r in results) and store.counts(engine)["photos"] == 3
    files = [store.photo_file(stages.sha256_hex(u.data), "JPEG") for u in uploads]
    assert [(config.data_dir() / f).read_bytes() for f in files] == [u.data for u in uploads]
    assert refused[0].startswith("shelf-decode")  # written off the model's thread ...
    assert [written[f].startswith("shelf-decode") for f in files] == [False, True, True]  # ... or, refused there,
    # again when the photo is stored
