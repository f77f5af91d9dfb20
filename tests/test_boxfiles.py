import json

import pytest

from shelf.ingest.boxfiles import (
    MAX_BOX_FILE_BYTES,
    BoxFileError,
    boxes_for_photo,
    parse_box_file,
)
from shelf.ingest.regions import Box


def test_sku110k_csv_well_formed():
    data = b"shelf.jpg,10,20,110,220,object,1000,800\nshelf.jpg,200,20,300,220,object,1000,800\n" \
           b"other.jpg,1,1,5,5,object,10,10\n"
    imported = parse_box_file(data, "annotations_val.csv")
    assert imported.format == "SKU-110K CSV" and imported.n_problems == 0
    boxes, messages = boxes_for_photo(imported, "shelf.jpg", 1000, 800)
    assert boxes == [Box(10, 20, 110, 220), Box(200, 20, 300, 220)] and messages == []


def test_sku110k_malformed_lines_are_numbered_and_the_rest_loads():
    data = "\n".join([
        "image_name,x1,y1,x2,y2,class,image_width,image_height",  # a header is tolerated
        "shelf.jpg,10,20,110,220,object,1000,800",
        "shelf.jpg,300,20,200,220,object,1000,800",  # x2 <= x1
        "shelf.jpg,5,5,5,50,object,1000,800",  # zero area
        "shelf.jpg,nan,1,2,3,object,1000,800",  # NaN
        "shelf.jpg,1,2",  # too few fields
        "shelf.jpg,x,y,z,w,object,1000,800",  # not numbers
        "shelf.jpg,900,700,1200,900,object,1000,800",  # sticks out: clipped
        "shelf.jpg,2000,2000,2100,2100,object,1000,800",  # entirely outside
    ]).encode()
    imported = parse_box_file(data, "boxes.csv")
    assert [m.split(": ")[0] for m in imported.messages] == [
        "boxes.csv, line 3", "boxes.csv, line 4", "boxes.csv, line 5", "boxes.csv, line 6", "boxes.csv, line 7"]
    assert "x2 > x1" in imported.messages[0]
    boxes, messages = boxes_for_photo(imported, "shelf.jpg", 1000, 800)
    assert boxes == [Box(10, 20, 110, 220), Box(900, 700, 1000, 800)]
    assert messages == ["boxes.csv, line 9: box lies outside the 1000×800 photo"]


def test_sku110k_declared_size_rescales_a_resized_copy():
    imported = parse_box_file(b"shelf.jpg,100,100,200,300,object,2000,1600\n", "b.csv")
    assert boxes_for_photo(imported, "shelf.jpg", 1000, 800)[0] == [Box(50, 50, 100, 150)]


def test_names_match_by_base_name_case_insensitively():
    imported = parse_box_file(b"images/Shelf.JPG,1,1,9,9\n", "b.csv")
    assert boxes_for_photo(imported, "shelf.jpg", 10, 10)[0] == [Box(1, 1, 9, 9)]
    boxes, messages = boxes_for_photo(imported, "another.jpg", 10, 10)
    assert boxes == [] and messages == ["b.csv: no boxes for another.jpg"]


def test_coco_well_formed_and_malformed():
    document = {
        "images": [{"id": 1, "file_name": "dir/shelf.jpg", "width": 640, "height": 480},
                   {"id": 2, "file_name": "other.jpg", "width": 10, "height": 10}, {"nope": 1}],
        "annotations": [
            {"id": 10, "image_id": 1, "bbox": [10, 20, 100, 50], "category_id": 1},
            {"id": 11, "image_id": 1, "bbox": [10, 20, 0, 50]},  # zero width
            {"id": 12, "image_id": 99, "bbox": [1, 1, 2, 2]},  # unknown image
            {"id": 13, "image_id": 1, "bbox": "1,2,3,4"},  # not a list of numbers
            {"id": 14, "image_id": 1, "bbox": [600, 400, 100, 100]},  # clipped to the photo
            "not an object",
        ],
    }
    imported = parse_box_file(json.dumps(document).encode(), "coco.json")
    assert imported.format == "COCO JSON"
    assert imported.n_problems == 5
    assert any("annotation 2 (id 12)" in m and "image_id 99" in m for m in imported.messages)
    boxes, _ = boxes_for_photo(imported, "shelf.jpg", 640, 480)
    assert boxes == [Box(10, 20, 110, 70), Box(600, 400, 640, 480)]


@pytest.mark.parametrize("data,problem", [
    (b"{not json", "not valid JSON"),
    (b'{"images": 3}', "needs 'images' and 'annotations'"),
    (b"\xff\xfe\x00binary", "not a text file"),
])
def test_unusable_coco_files(data, problem):
    with pytest.raises(BoxFileError, match=problem):
        parse_box_file(data, "coco.json")


def test_yolo_is_matched_by_stem_and_scaled():
    data = b"0 0.5 0.5 0.2 0.4\n3 0.1 0.1 0.2 0.2 0.93\n\n# comment\n1 0.5 0.5 0 0.2\n2 5 5 1 1\n7 a b c d\n1 2 3\n"
    imported = parse_box_file(data, "IMG_0042.txt")
    assert imported.format == "YOLO txt"
    assert [m.split(": ")[0] for m in imported.messages] == [
        "IMG_0042.txt, line 5", "IMG_0042.txt, line 6", "IMG_0042.txt, line 7", "IMG_0042.txt, line 8"]
    boxes, messages = boxes_for_photo(imported, "img_0042.jpeg", 1000, 500)
    assert boxes == [Box(400, 150, 600, 350), Box(0, 0, 200, 100)]  # the second box is clipped at the corner
    assert messages == []


def test_huge_box_files_are_refused_whole():
    with pytest.raises(BoxFileError, match="limit"):
        parse_box_file(b"x" * (MAX_BOX_FILE_BYTES + 1), "huge.csv")


def test_many_lines_for_other_images_are_cheap_and_do_not_leak_in():
    lines = [f"other{i % 500}.jpg,1,1,5,5,object,10,10" for i in range(200_000)]
    lines.append("shelf.jpg,1,1,9,9,object,10,10")
    imported = parse_box_file("\n".join(lines).encode(), "big.csv")
    assert imported.n_boxes == 200_001
    assert boxes_for_photo(imported, "shelf.jpg", 10, 10)[0] == [Box(1, 1, 9, 9)]


def test_problem_messages_are_bounded():
    data = "\n".join("shelf.jpg,5,5,1,1" for _ in range(500)).encode()
    imported = parse_box_file(data, "bad.csv")
    assert imported.n_problems == 500 and len(imported.messages) == 21
    assert imported.messages[-1] == "bad.csv: … and 480 more problems"


def test_boxes_filed_under_the_exports_clash_name_are_found_by_the_photos_hash():
    sha = "d389a26e" + "0" * 56
    imported = parse_box_file(b"shelf0-d389a26e.jpg,0,0,10,10,x,100,100\n<b>x</b>.jpg,5,5,20,20,x,100,100\n",
                              "export.csv")
    assert boxes_for_photo(imported, "shelf0.jpg", 100, 100, sha)[0] == [Box(0, 0, 10, 10)]
    assert boxes_for_photo(imported, "shelf0.jpg", 100, 100, "f" * 64)[0] == []  # another photo of that name
    assert boxes_for_photo(imported, "shelf0.jpg", 100, 100)[0] == []
    assert boxes_for_photo(imported, "<b>x</b>.jpg", 100, 100)[0] == [Box(5, 5, 20, 20)]
