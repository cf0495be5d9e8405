"""Model loading: the stand-in through transformers, runtime checks, dtypes and the hub offline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from moondream_iac.server.model import (
    ModelLoadError,
    check_runtime_requirements,
    load_model,
    resolve_dtype,
)
from moondream_iac.testing import write_tiny_model
from tests.server_cases import ui_image

pytestmark = pytest.mark.usefixtures("hub_libraries_imported")


def test_stand_in_return_shapes(tiny_model):
    image = ui_image(seed=91)

    caption = tiny_model.caption(image, length="short")
    streamed = tiny_model.caption(image, length="short", stream=True)
    answer = tiny_model.query(image, "What?", reasoning=True)
    detected = tiny_model.detect(image, "button", settings={"max_objects": 1})
    pointed = tiny_model.point(image, "button")

    assert isinstance(caption["caption"], str)
    assert "".join(streamed["caption"]) == caption["caption"]
    assert set(answer) == {"answer", "reasoning"}
    assert len(detected["objects"]) == 1
    assert set(detected["objects"][0]) == {"x_min", "y_min", "x_max", "y_max"}
    assert set(pointed["points"][0]) == {"x", "y"}


def test_stand_in_depends_on_image_and_prompt(tiny_model):
    first, second = ui_image(seed=92), ui_image(seed=93)
    assert tiny_model.caption(first)["caption"] != tiny_model.caption(second)["caption"]
    assert tiny_model.point(first, "a")["points"] != tiny_model.point(first, "the other thing")["points"]
    assert tiny_model.point(tiny_model.encode_image(first), "a") == tiny_model.point(first, "a")


def test_stand_in_variants_differ(tmp_path, tiny_model):
    other = load_model(write_tiny_model(tmp_path / "v1", variant=1), dtype="float32", device="cpu")
    image = ui_image(seed=94)
    assert other.caption(image)["caption"] != tiny_model.caption(image)["caption"]
    assert other.point(image, "a")["points"] != tiny_model.point(image, "a")["points"]


def test_stand_in_files_small(tiny_model_dir):
    names = sorted(path.name for path in tiny_model_dir.iterdir())
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert names == ["config.json", "hf_moondream.py", "model.safetensors"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "hf_moondream.HfMoondream"
    assert (tiny_model_dir / "model.safetensors").stat().st_size < 16_000


@pytest.mark.parametrize("dtype, expected", [("bfloat16", "torch.bfloat16"), ("float16", "torch.float16"), ("auto", "torch.float32")])
def test_load_model_dtype(tiny_model_dir, dtype, expected):
    model = load_model(tiny_model_dir, dtype=dtype, device="cpu")
    assert str(model.dtype) == expected
    assert len(model.point(ui_image(), "a")["points"]) == 1


def test_resolve_dtype_auto():
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    assert resolve_dtype("auto", "cuda:1") == "bfloat16"
    assert resolve_dtype("auto", "cpu") == "float32"
    with pytest.raises(ModelLoadError, match="invalid dtype 'int8'"):
        resolve_dtype("int8", "cpu")


def test_runtime_check_rejects_transformers_5():
    with pytest.raises(ModelLoadError) as raised:
        check_runtime_requirements(None, installed_version="5.0.0")
    message = str(raised.value)
    assert "transformers 5.0.0 is installed" in message
    assert "transformers<5" in message


def test_runtime_check_uses_given_range():
    check_runtime_requirements(">=4.51,<5", installed_version="4.57.6")
    check_runtime_requirements(None)
    with pytest.raises(ModelLoadError, match=r"transformers 4.40.0 is installed, but this model needs transformers<5,>=4.44"):
        check_runtime_requirements(">=4.44,<5", installed_version="4.40.0")
    with pytest.raises(ModelLoadError, match="invalid transformers version range"):
        check_runtime_requirements("four-ish")


def test_load_model_checks_range_first(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="pip install 'transformers>=99'"):
        load_model(tiny_model_dir, device="cpu", transformers_range=">=99")


def test_load_model_missing_dir(tmp_path):
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(tmp_path / "absent", device="cpu")


def test_load_model_corrupt_weights(tmp_path):
    model_dir = write_tiny_model(tmp_path / "broken")
    (model_dir / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(ModelLoadError, match="failed to load the model"):
        load_model(model_dir, device="cpu")


def test_load_model_sets_hub_offline(tiny_model_dir):
    script = (
        "import os, sys; from moondream_iac.server.model import load_model;"
        f"model = load_model({str(tiny_model_dir)!r}, device='cpu');"
        "import huggingface_hub.constants as c;"
        "print(os.environ.get('HF_HUB_OFFLINE'), c.HF_HUB_OFFLINE)"
    )
    env = {key: value for key, value in __import__("os").environ.items() if key != "HF_HUB_OFFLINE"}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["1", "True"]


def test_encode_image_accepts_grayscale(tiny_model):
    encoded = tiny_model.encode_image(Image.new("L", (50, 40), 128))
    assert tiny_model.point(encoded, "a")["points"]
