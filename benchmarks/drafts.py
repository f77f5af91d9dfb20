"""How far a JPEG draft moves fast mode (`python -m benchmarks.drafts`): on the 12 real shelf photos
(../shared/data/real-shelves), square regions of side S tile each photo; their fast-mode model inputs
(shelf.recognition.inputs.region_input) from the full decode and from the photo decoded at M/8 go through the
fine-tuned benchmark ResNet-18 (benchmarks.common, torch eager fp32). Printed per (M/8, S): the region's short side
at that scale, top-1 agreement, max |Δp| and the mean |Δ| of the input pixels. It is what set
stages.DRAFT_MIN_SIDE: a region kept at 240–256 px (enlarged ≤ 1.07× by the model's Resize(256)) against the ≥ 256
px that was the rule before. Needs torch and torchvision; ~2 min on 2 cores."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import REAL_SHELVES, finetuned_weights
from shelf.ingest.images import decode_image
from shelf.ingest.regions import Box
from shelf.recognition import stages
from shelf.recognition.inputs import normalise

CASES = [(5, 410), (5, 440), (4, 480), (4, 496), (4, 512), (4, 540)]  # (M of M/8, region side S in photo pixels)


def run(folder: Path = REAL_SHELVES) -> list[dict]:
    import torch
    from torchvision.models import resnet18

    model = resnet18()
    model.load_state_dict(torch.load(finetuned_weights(), weights_only=True))
    model.eval()
    settings = stages.Settings("", "whole", backend="int8")

    def probabilities(inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(normalise(inputs))), 1).numpy()

    totals = {case: {"crops": 0, "agree": 0, "max_dp": 0.0, "pixels": []} for case in CASES}
    paths = sorted(folder.glob("*.JPG"))
    if not paths:
        raise SystemExit(f"no real shelf photos in {folder}")
    for path in paths:
        data = path.read_bytes()
        full = decode_image(data, path.name)
        for eighths, side in CASES:
            if side > min(full.width, full.height):
                continue
            boxes = [Box(x, y, x + side, y + side) for y in range(0, full.height - side + 1, side)
                     for x in range(0, full.width - side + 1, side)]
            draft = decode_image(data, path.name, draft_eighths=lambda width, height, m=eighths: m)
            exact, reduced = stages.region_inputs(full, boxes, settings), stages.region_inputs(draft, boxes, settings)
            p, q = probabilities(exact), probabilities(reduced)
            total = totals[(eighths, side)]
            total["crops"] += len(boxes)
            total["agree"] += int((p.argmax(1) == q.argmax(1)).sum())
            total["max_dp"] = max(total["max_dp"], float(np.abs(p - q).max()))
            total["pixels"].append(float(np.abs(exact.astype(int) - reduced).mean()))
    return [{"draft": f"{m}/8", "side": s, "kept": s * m / 8, "crops": t["crops"], "top1": t["agree"] / t["crops"],
             "max_dp": t["max_dp"], "mean_dpixel": float(np.mean(t["pixels"]))}
            for (m, s), t in totals.items() if t["crops"]]


def report(rows: list[dict]) -> None:
    print("draft  region side  kept at draft  crops  top-1 agreement  max |Δp|  mean |Δ pixel|")
    for r in rows:
        print(f"{r['draft']:5s}  {r['side']:11d}  {r['kept']:11.1f}px  {r['crops']:5d}  {r['top1']:15.2%}  "
              f"{r['max_dp']:.2e}  {r['mean_dpixel']:.2f}")


if __name__ == "__main__":
    report(run())
