"""Region profiles: `auto` tuned from labelled photos, stored by name and version, chosen per store, and recorded
in every run that uses one."""
import json
import random

import pytest
import sqlalchemy as sa

from shelf.access import Forbidden, Identity
from shelf.ingest import tuning
from shelf.ingest.auto import AutoParams
from shelf.ingest.regions import parse_region_mode
from shelf.recognition.pipeline import Upload, recognize
from shelf.serving.cli import main as cli
from shelf.storage import profiles, store
from shelf.storage.schema import audit_log
from tests.conftest import image_bytes
from tests.synthetic import make_planned_shelf, make_shelf

NARROW = {k: tuning.TUNABLE[k] for k in ("facing_width", "min_facing_aspect", "cut_cost")}


def narrow_shelf(seed: int):
    """Six rows of 60 products each, every one 1.7 % of the photo wide: narrower than the default profile's
    narrowest facing (4.5 % of the width)."""
    rng = random.Random(seed)
    image, facings, _ = make_planned_shelf([[rng.randrange(40) for _ in range(60)] for _ in range(6)], seed=seed)
    return image, [box for _, box in facings]


def test_the_tuner_finds_the_narrow_facings_the_shelves_were_made_with():
    items = [tuning.labelled(f"narrow{seed}.png", *narrow_shelf(seed)) for seed in range(2)]
    tuned = tuning.tune(items, passes=2, tunable=NARROW)
    assert tuned.default.f1 < 0.3  # the default cannot cut facings this narrow
    assert tuned.cross_validated.f1 > 0.9 and tuned.fitted.f1 > 0.9
    work_width = AutoParams().work_width
    slot = (1600 - 8) / 60 / 1600 * work_width  # one product, in the analysis copy's pixels
    assert tuned.params.facing_width[0] * work_width <= slot  # found back: narrow enough for one product
    assert set(tuned.params.changes()) <= set(NARROW)


def test_cross_validation_scores_each_photo_with_a_tuning_on_the_others(monkeypatch):
    items = [tuning.labelled(f"narrow{seed}.png", *narrow_shelf(seed)) for seed in range(3)]
    searched = []
    real_search = tuning.search

    def spy(photos, *args, **kwargs):
        searched.append(sorted(p.name for p in photos))
        return real_search(photos, *args, **kwargs)
    monkeypatch.setattr(tuning, "search", spy)
    tuned = tuning.tune(items, passes=1, tunable={"facing_width": (0.01,)})
    names = [item.name for item in items]
    assert searched == [sorted(set(names) - {name}) for name in names] + [sorted(names)]
    assert set(tuned.cross_validated_per_photo) == set(names)


def test_a_tuning_that_does_no_better_on_unseen_photos_keeps_the_default(monkeypatch):
    """A search on a few photos can fit them and lose on the next ones (issue 25: a profile tuned on half of the
    real shelves scored below the default on the other half). When leaving each photo out says so, the tuned
    profile is the default, and the report says why."""
    items = [tuning.labelled(f"uniform{seed}.jpg", *make_shelf(seed=seed)) for seed in range(3)]
    overfitted = AutoParams(cut_cost=0.45, facing_width=(0.2, 0.3))  # boxes two packs as one
    monkeypatch.setattr(tuning, "search", lambda photos, *a, **k: (overfitted, tuning.Score(1, 1, 1)))
    tuned = tuning.tune(items, passes=1)
    assert tuned.cross_validated.f1 < tuned.default.f1
    assert tuned.params == AutoParams() and tuned.fitted == tuned.default  # what a saved profile's figures say
    assert tuned.searched == overfitted and "kept the default settings" in tuning.report(tuned)
    # (a tuning that does better on unseen photos is kept: test_the_tuner_finds_the_narrow_facings_...)


def test_profile_names_are_checked():
    assert parse_region_mode("auto:beverages-v2").source == "beverages-v2"
    assert parse_region_mode("auto:beverages-v2").text == "auto:beverages-v2"
    for bad in ("auto:", "auto:../x", "auto:a b", "auto:" + "x" * 41):
        with pytest.raises(ValueError):
            parse_region_mode(bad)
    with pytest.raises(profiles.ProfileError, match="built-in"):
        profiles.check_name("default")


def test_a_profile_is_versioned_survives_a_restart_and_is_audited(tmp_path):
    url = f"sqlite:///{tmp_path / 'profiles.db'}"
    engine = store.open_store(url)
    first = profiles.save_profile(engine, "cans", AutoParams(cut_cost=0.1), {"photos": 3})
    second = profiles.save_profile(engine, "cans", AutoParams(cut_cost=0.3, facing_width=(0.01, 0.3)), {})
    assert (first.version, second.version) == (1, 2)
    engine.dispose()
    again = store.open_store(url)  # a new process, as far as the store can tell
    found = profiles.get_profile(again, "cans")
    assert found.version == 2 and found.params == AutoParams(cut_cost=0.3, facing_width=(0.01, 0.3))
    assert [p.label for p in profiles.list_profiles(again)] == ["cans v2"]
    with again.connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.action, audit_log.c.target)).all()
    assert actions.count(("manage_profiles", "region profile cans")) == 2
    with pytest.raises(Forbidden):
        profiles.save_profile(again, "cans", AutoParams(), {}, by=Identity("v@example.com", "viewer", "oidc"))


def test_runs_record_the_profile_they_used_and_stores_use_their_own(loaded, engine):
    tuned = profiles.save_profile(engine, "tobacco", AutoParams(cut_cost=0.1), {})
    image, _ = make_shelf(3, 800, 600)
    data = image_bytes(image, "PNG")
    (named,) = recognize(loaded, engine, [Upload("a.png", data)], store.Context("S1"), region_mode="auto:tobacco")
    profiles.set_store_profile(engine, "S14", "tobacco")
    (by_store,) = recognize(loaded, engine, [Upload("b.png", data[:-1] + b"\x00")], store.Context("S14"),
                            region_mode="auto")
    assert named.ok and by_store.ok
    provenance = [p["region_profile"] for p in store.runs_frame(engine)["preprocessing"]]
    assert provenance[0] == {"name": "tobacco", "version": tuned.version, "params": {"cut_cost": 0.1}}
    assert provenance[1]["name"] == "default" and provenance[1]["stores"]["S14"]["name"] == "tobacco"
    with pytest.raises(profiles.ProfileError, match="no region profile named 'nope'"):
        recognize(loaded, engine, [Upload("c.png", data)], store.Context(), region_mode="auto:nope")


def test_removing_a_profile_sends_its_stores_back_to_the_default(engine):
    profiles.save_profile(engine, "bags", AutoParams(min_fill=0.3), {})
    profiles.set_store_profile(engine, "North", "bags")
    assert profiles.profile_for(engine, "", "North").name == "bags"
    assert profiles.remove_profile(engine, "bags") == 1
    assert profiles.profile_for(engine, "", "North") == profiles.DEFAULT_PROFILE
    with pytest.raises(profiles.ProfileError):
        profiles.get_profile(engine, "bags")
    with pytest.raises(profiles.ProfileError):
        profiles.set_store_profile(engine, "North", "bags")


@pytest.fixture
def labelled_photos(tmp_path):
    paths, lines = [], []
    for seed in range(2):
        image, boxes = narrow_shelf(seed)
        path = tmp_path / f"narrow{seed}.png"
        path.write_bytes(image_bytes(image, "PNG"))
        paths.append(str(path))
        lines += [f"{path.name},{b.x1},{b.y1},{b.x2},{b.y2},object,1600,1200" for b in boxes]
    return paths, lines


def test_regions_tune_saves_a_profile_the_cli_lists_and_uses(labelled_photos, tmp_path, capsys, monkeypatch):
    paths, lines = labelled_photos
    truth = tmp_path / "truth.csv"
    truth.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(tuning, "TUNABLE", NARROW)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cli(["regions", "tune", *paths, "--truth", str(truth), "--name", "narrow", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "cross-validated" in out and "saved region profile narrow v1" in out
    assert cli(["regions", "profile", "store", "S9", "narrow", "--db", db]) == 0
    assert cli(["regions", "profile", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "narrow v1" in listing and "stores: S9" in listing and "cross-validated F1" in listing
    assert cli(["regions", "evaluate", *paths, "--truth", str(truth), "--regions", "auto:narrow", "--db", db,
                "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["f1"] > 0.9
    assert cli(["regions", "evaluate", *paths, "--truth", str(truth), "--regions", "auto:gone", "--db", db]) == 2
    assert "no region profile named 'gone'" in capsys.readouterr().err


def test_a_bad_truth_file_is_reported_by_line_and_the_rest_still_tunes(labelled_photos, tmp_path, capsys,
                                                                       monkeypatch):
    paths, lines = labelled_photos
    truth = tmp_path / "truth.csv"
    truth.write_text("\n".join([lines[0], "narrow0.png,10,10,x,20,object,1600,1200", lines[1],
                                "narrow0.png,1,2"] + lines[2:]) + "\n")
    monkeypatch.setattr(tuning, "TUNABLE", {"cut_cost": (0.1,)})
    assert cli(["regions", "tune", *paths, str(tmp_path / "absent.png"), "--truth", str(truth),
                "--passes", "1"]) == 0
    err = capsys.readouterr().err
    assert "truth.csv, line 2" in err and "truth.csv, line 4" in err  # named, by line number
    assert "absent.png" in err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert cli(["regions", "tune", *paths, "--truth", str(broken)]) == 2
    assert "broken.json: not valid JSON (line 1" in capsys.readouterr().err
