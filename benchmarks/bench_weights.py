"""Time loading a checkpoint through the runtime's load_model against a plain read of its files.

The checkpoint is generated at run time: the tiny stand-in model's code and config with a
wider feature size, so that every tensor is a real parameter the loader has to read
(about 300 MB at the default size). Both orders are measured in one run, plain read then
load and load then plain read, so the page cache favours neither. The ratio compared is
load_model time over plain read time; the goal is at most 1.3.

It also times ``verify_model_dir`` (sha256 of every file), which the runtime runs
before it turns ready when a lock file is given.

    python benchmarks/bench_weights.py [--size-mb 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

CHUNK_BYTES = 16 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300, help="checkpoint size in MB (10^6 bytes)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per order; the median is reported")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-weights-") as scratch:
        scratch_dir = Path(scratch)
        # huggingface_hub and transformers read these when first imported.
        os.environ["HF_HOME"] = str(scratch_dir / "hf")
        os.environ["HF_MODULES_CACHE"] = str(scratch_dir / "hf" / "modules")
        os.environ["HF_HUB_OFFLINE"] = "1"
        run(scratch_dir, arguments.size_mb * 1_000_000, arguments.repeats)


def run(scratch_dir: Path, size_bytes: int, repeats: int) -> None:
    from moondream_iac.server.model import load_model
    from moondream_iac.testing.tiny_model import write_tiny_model
    from moondream_iac.weights.lock import verify_model_dir

    # Import torch and transformers and compile the remote code once, outside the timings.
    load_model(write_tiny_model(scratch_dir / "warmup"), dtype="float32", device="cpu")

    model_dir, lock_path = write_checkpoint(scratch_dir / "checkpoint", size_bytes)
    total = sum(path.stat().st_size for path in model_dir.iterdir() if path.is_file())
    print(f"checkpoint: {total / 1e6:.0f} MB in {model_dir}")

    def load() -> None:
        model = load_model(model_dir, dtype="float32", device="cpu")
        del model

    def load_and_touch() -> None:
        # On a CPU the loader maps the safetensors file and reads pages on first use, so
        # touching every parameter is what makes the bytes resident, as a copy to a GPU does.
        model = load_model(model_dir, dtype="float32", device="cpu")
        for parameter in model.parameters():
            float(parameter.detach().sum())
        del model

    orders = ("read, then load", "load, then read")
    reads: dict[str, list[float]] = {order: [] for order in orders}
    loads: dict[str, list[float]] = {order: [] for order in orders}
    touched: dict[str, list[float]] = {order: [] for order in orders}
    for _ in range(repeats):
        reads[orders[0]].append(timed(lambda: plain_read(model_dir)))
        loads[orders[0]].append(timed(load))
        touched[orders[0]].append(timed(load_and_touch))
        touched[orders[1]].append(timed(load_and_touch))
        loads[orders[1]].append(timed(load))
        reads[orders[1]].append(timed(lambda: plain_read(model_dir)))
    verify_times = [timed(lambda: verify_model_dir(model_dir, lock_path)) for _ in range(repeats)]

    print(f"{'order':<16} {'plain read s':>12} {'load_model s':>12} {'ratio':>6} "
          f"{'load+touch s':>12} {'ratio':>6}")
    for order in orders:
        read_s = statistics.median(reads[order])
        load_s = statistics.median(loads[order])
        touch_s = statistics.median(touched[order])
        print(f"{order:<16} {read_s:>12.3f} {load_s:>12.3f} {load_s / read_s:>6.2f} "
              f"{touch_s:>12.3f} {touch_s / read_s:>6.2f}")
    read_all = statistics.median(reads[orders[0]] + reads[orders[1]])
    verify_s = statistics.median(verify_times)
    print(f"verify_model_dir (sha256 of every file): {verify_s:.3f} s, "
          f"{verify_s / read_all:.2f}x the plain read, {total / verify_s / 1e6:.0f} MB/s")
    print(f"median of {repeats} runs per cell; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


def write_checkpoint(folder: Path, size_bytes: int) -> tuple[Path, Path]:
    """Write the stand-in model with a feature size that makes its float32 weights ``size_bytes`` long."""
    import torch
    from safetensors.torch import save_file

    from moondream_iac.testing import tiny_model
    from moondream_iac.weights.hashing import digest_file
    from moondream_iac.weights.lock import LockedFile, WeightsLock, write_lock

    tiny_model.write_tiny_model(folder)
    input_size = 3 * tiny_model.IMAGE_SIDE * tiny_model.IMAGE_SIDE
    per_feature = input_size + tiny_model.BYTE_BUCKETS + tiny_model.VOCABULARY_SIZE + 4
    feature_size = max(size_bytes // (4 * per_feature), tiny_model.FEATURE_SIZE)

    source = tiny_model.MODELING_SOURCE.format(
        image_side=tiny_model.IMAGE_SIDE, feature_size=feature_size,
        byte_buckets=tiny_model.BYTE_BUCKETS, model_type=tiny_model.MODEL_TYPE,
    )
    (folder / tiny_model.MODELING_FILE).write_text(source, encoding="utf-8")

    generator = torch.Generator().manual_seed(0)
    tensors = {
        "vision.weight": torch.randn(feature_size, input_size, generator=generator),
        "text_embedding.weight": torch.randn(tiny_model.BYTE_BUCKETS, feature_size, generator=generator),
        "text_head.weight": torch.randn(tiny_model.VOCABULARY_SIZE, feature_size, generator=generator),
        "region.weight": torch.randn(4, feature_size, generator=generator),
    }
    save_file(tensors, str(folder / tiny_model.WEIGHTS_FILE), metadata={"format": "pt"})

    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest = digest_file(path)
            files[path.name] = LockedFile(size=digest.size, sha256=digest.sha256,
                                          hub_check="none", hub_oid="")
    lock_path = folder.parent / "weights.lock"
    write_lock(WeightsLock(repo="bench/stand-in", revision="local", sha="local", files=files), lock_path)
    return folder, lock_path


def plain_read(folder: Path) -> int:
    """Read every file of ``folder`` sequentially into one reused buffer; return the byte count."""
    buffer = bytearray(CHUNK_BYTES)
    total = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        with path.open("rb", buffering=0) as stream:
            while count := stream.readinto(buffer):
                total += count
    return total


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
