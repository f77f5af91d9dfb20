"""Fast mode's int8 rewrite against the int8 model as quantised: `python -m benchmarks.int8_rewrite [--rounds N]`, and
`python -m benchmarks.no_amx python -m benchmarks.int8_rewrite` for a CPU without AMX.

The rewrite (int8_rewrites.quantised_input_copy: quantised bytes in, the 7×7 stem as space-to-depth) and the model as
quantised (normalised floats in, its own QuantizeLinear, the 7×7 stem), on AMX CPUs both with their weights off zero
point 0 as fast mode's AMX copy has them; both from the same calibration on real shelf crops and the fine-tuned
benchmark ResNet-18, in one process with their runs interleaved, so a neighbour's burst hits both alike:
  1. input plus network on batches of 16 (classify.BATCH_SIZE) and 40 real crops: median ms, and the outputs' largest
     difference (0: the rewrite computes the very same numbers);
  2. `pipeline.recognize` (grid:5x8, storing included) on 9 generated 12 MP photos into a fresh store: median s per
     photo and CPU s per photo, and the median of the per-round ratios.
Ratios below 1 mean the rewrite is faster. Fast mode runs it only without AMX (backends.int8_for_this_cpu): with AMX
it measured no faster. ~2 min on 2 cores."""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def models(folder: Path):
    """(the benchmark model as a LoadedModel, the int8 model as quantised, its rewrite, the measured crops); on AMX
    CPUs both models with their weights off zero point 0."""
    import onnx

    from benchmarks.common import finetuned_weights
    from benchmarks.runtimes import amx_copy, build_models, real_inputs
    from shelf.recognition import backends
    from shelf.recognition import model as shelf_model
    calibration, measured = real_inputs()
    _, _, int8, _ = build_models(folder, calibration)
    amx = backends.has_amx_int8()
    rewrite = onnx.load(str(int8))
    assert backends.quantised_input_copy(rewrite), "fast mode's int8 model no longer starts as the rewrite expects"
    if amx:
        backends.shift_weight_zero_points(rewrite)
    rewritten = int8.with_suffix(".rewritten.onnx")
    onnx.save(rewrite, str(rewritten))
    state, info = shelf_model.read_weights_file(finetuned_weights(), "benchmark")
    return shelf_model.build_model(state, info), amx_copy(int8) if amx else int8, rewritten, measured


def interleaved(variants: dict, measure, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list] = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, variant in variants.items():
            times[name].append(measure(variant, round_, name))
    return times


def network(backends_: dict, inputs: np.ndarray, rounds: int) -> None:
    for batch in (16, 40):
        chosen = inputs[np.arange(batch) % len(inputs)]
        outputs = {name: b.run(b.prepare(chosen)) for name, b in backends_.items()}  # also the warm-up
        (before, after) = outputs.values()
        difference = max(float(np.abs(x - y).max()) for x, y in zip(before, after))

        def measure(backend, *_):
            start = time.perf_counter()
            backend.run(backend.prepare(chosen))
            return time.perf_counter() - start
        times = interleaved(backends_, measure, rounds)
        (old, new) = (statistics.median(t) for t in times.values())
        print(f"  input + network, batch {batch}: as quantised {old * 1e3:.1f} ms, rewritten {new * 1e3:.1f} ms "
              f"(median of {rounds}) = {new / old:.2f}×; largest output difference {difference:g}")


def pipeline_per_photo(loaded_by_name: dict, folder: Path, rounds: int) -> None:
    from benchmarks.end_to_end import _photos
    from shelf.recognition.pipeline import Upload, recognize
    from shelf.storage import store
    uploads = [Upload(Path(p).name, Path(p).read_bytes()) for p in _photos(folder / "photos-in", 9)]
    cpu: dict[str, list[float]] = {name: [] for name in loaded_by_name}

    def measure(loaded, round_, name):
        shutil.rmtree(folder / "photos", ignore_errors=True)  # each run writes the photos' bytes, as a new store does
        engine = store.open_store(f"sqlite:///{folder}/round-{round_}-{len(cpu[name])}-{name[:4]}.db")
        start, start_cpu = time.perf_counter(), time.process_time()
        results = recognize(loaded, engine, uploads, store.Context(), region_mode="grid:5x8", previews=0)
        cpu[name].append((time.process_time() - start_cpu) / len(uploads))
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        engine.dispose()
        return (time.perf_counter() - start) / len(uploads)
    times = interleaved(loaded_by_name, measure, rounds)
    for name, t in times.items():
        print(f"  recognize, 9 × 12 MP grid:5x8, {name}: {statistics.median(t):.3f} s a photo (median of {rounds}; "
              f"min {min(t):.3f}), CPU {statistics.median(cpu[name]):.3f} s")
    ratios = [new / old for old, new in zip(*times.values())]
    print(f"  per-round ratio rewritten ÷ as quantised: median {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.2f}–{max(ratios):.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_rewrite", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    from benchmarks.roofline import this_cpu
    from shelf.recognition.backends import OnnxBackend
    cpu = this_cpu()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {cpu.model}, {cpu.cores} logical cores; {cpu.features}; load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        loaded, before, copy, measured = models(folder)
        print(f"  as quantised: {before.name}; rewritten: {copy.name}")
        backends_ = {"as quantised": OnnxBackend("int8", before), "rewritten": OnnxBackend("int8", copy)}
        network(backends_, measured, args.rounds * 3)
        pipeline_per_photo({name: dataclasses.replace(loaded, backend=b) for name, b in backends_.items()}, folder,
                           args.rounds)
    print(f"  load afterwards {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
