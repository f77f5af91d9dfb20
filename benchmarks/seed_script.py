"""The seed script: the one-file app Shelf grew from, as a command. What the end-to-end benchmark compares against.

    python -m benchmarks.seed_script --weights W [--grid RxC] [--db FILE.sqlite] PHOTO...

Each photo is decoded once with Pillow, cut into a grid of regions, and each crop is preprocessed on its own
(torchvision's Resize 256 / CenterCrop 224 / Normalize) and classified by eager PyTorch with a batch of one; the
top-3 of every region goes into a SQLite file (one transaction per photo) when --db is given. It imports torch and
torchvision at the top and builds the model before the first photo, as the seed did.
"""
from __future__ import annotations

import argparse
import io
import math
import sqlite3

import torch
from PIL import Image
from torchvision import transforms
from torchvision.models import ResNet18_Weights, resnet18


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_script")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--grid", default="1x1", help="RxC regions per photo (1x1: the whole photo)")
    parser.add_argument("--db", default=None, help="SQLite file to store the top-3 of every region in")
    args = parser.parse_args(argv)
    rows, cols = map(int, args.grid.split("x"))
    model = resnet18()
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    model.eval()
    transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    db = sqlite3.connect(args.db) if args.db else None
    if db is not None:
        db.execute("CREATE TABLE IF NOT EXISTS photos (id INTEGER PRIMARY KEY, name TEXT, width INT, height INT)")
        db.execute("CREATE TABLE IF NOT EXISTS predictions (photo_id INT, region INT, x1 INT, y1 INT, x2 INT, "
                   "y2 INT, rank INT, class_index INT, label TEXT, probability REAL)")
    for path in args.photos:
        with open(path, "rb") as file:
            image = Image.open(io.BytesIO(file.read())).convert("RGB")
        width, height = image.size
        boxes = [(math.floor(c * width / cols), math.floor(r * height / rows), math.ceil((c + 1) * width / cols),
                  math.ceil((r + 1) * height / rows)) for r in range(rows) for c in range(cols)]
        results = []
        for box in boxes:
            with torch.no_grad():
                probabilities = model(transform(image.crop(box)).unsqueeze(0)).softmax(1)[0]
            top = probabilities.topk(3)
            results.append((box, [(int(i), float(p)) for p, i in zip(top.values, top.indices)]))
        if db is not None:
            with db:
                photo_id = db.execute("INSERT INTO photos (name, width, height) VALUES (?, ?, ?)",
                                      (path, width, height)).lastrowid
                db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               [(photo_id, n, *box, rank + 1, index, categories[index], p)
                                for n, (box, top) in enumerate(results) for rank, (index, p) in enumerate(top)])
        best = results[0][1][0]
        print(f"{path}: {len(results)} region(s); first: {categories[best[0]]} {best[1]:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
