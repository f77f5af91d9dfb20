"""What the benchmarks share: the cache folder, a ResNet-18 fine-tuned on generated products (so agreement means
something), and running a measurement in a fresh child process (so its peak RSS is its own)."""
from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from shelf.recognition.backends import bench_cache

CACHE = bench_cache()
REAL_SHELVES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-shelves"  # read-only, CI's
N_SKUS, TRAIN_VIEWS, EPOCHS = 24, 24, 5


# --- a trained model for agreement ------------------------------------------------------------------------------

def finetuned_weights() -> Path:
    """ResNet-18 fine-tuned on generated products (N_SKUS classes mapped onto the first ImageNet indices)."""
    path = CACHE / f"finetuned-resnet18-{N_SKUS}x{TRAIN_VIEWS}x{EPOCHS}.pth"
    if path.exists():
        return path
    import torch
    from torchvision.models import resnet18

    from shelf.recognition.inputs import preprocessing
    from tests.synthetic import make_product
    torch.manual_seed(0)
    model = resnet18()
    transform = preprocessing()
    images = torch.stack([transform(make_product(s, v)) for s in range(N_SKUS) for v in range(TRAIN_VIEWS)])
    labels = torch.arange(N_SKUS).repeat_interleave(TRAIN_VIEWS)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 0.05, total_steps=EPOCHS * -(-len(images) // 32))
    model.train()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(images))
        for i in range(0, len(order), 32):
            batch = order[i:i + 32]
            loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        print(f"  fine-tuning epoch {epoch + 1}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def _child(target, args, queue):
    queue.put(target(*args))


def in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result
