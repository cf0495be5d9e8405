"""Cost preview: per-hour and monthly figures from the GPU catalog, unknown prices kept unknown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moondream_iac.errors import ConfigError

from moondream_iac.plan.cost import HOURS_PER_MONTH, cost_preview
from moondream_iac.spec.gpus import load_catalog
from moondream_iac.spec.schema import DeploySpec


def spec_of(**sections) -> DeploySpec:
    return DeploySpec.model_validate({"target": "modal", **sections})


def test_warm_containers_cost_per_month():
    spec = spec_of(gpu={"type": "A10G", "count": 2},
                   autoscaling={"min_containers": 1, "max_containers": 3})

    cost = cost_preview(spec, load_catalog(), environment="prod")

    assert cost["gpu"]["usd_per_gpu_hour"] == 1.10
    assert cost["gpu"]["usd_per_container_hour"] == pytest.approx(2.20)
    assert cost["idle_monthly_usd"] == pytest.approx(2.20 * HOURS_PER_MONTH)
    assert cost["max_monthly_usd"] == pytest.approx(3 * 2.20 * HOURS_PER_MONTH)
    assert cost["environment"] == "prod"
    assert cost["as_of"] == load_catalog().as_of


def test_scale_to_zero_costs_nothing_idle():
    cost = cost_preview(spec_of(), load_catalog(), environment=None)

    assert cost["idle_monthly_usd"] == 0.0
    assert cost["max_monthly_usd"] is None


def test_unknown_price_stays_unknown():
    spec = spec_of(gpu={"type": "H200", "fallbacks": ["H100"]}, autoscaling={"min_containers": 1})

    cost = cost_preview(spec, load_catalog(), environment=None)

    assert cost["gpu"]["usd_per_gpu_hour"] is None
    assert cost["idle_monthly_usd"] is None
    assert "unknown" in cost["gpu"]["price_source"]
    assert cost["fallbacks"][0]["type"] == "H100"
    assert cost["fallbacks"][0]["usd_per_gpu_hour"] == 3.95


def test_prices_file_overrides(tmp_path: Path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("as_of: '2027-01'\ngpus:\n  H200: {price_per_hour: 4.5}\n"
                      "  a10g: {price_per_hour: 1.0}\n", encoding="utf-8")
    catalog = load_catalog(prices)
    spec = spec_of(gpu={"type": "H200", "fallbacks": ["A10G"]}, autoscaling={"min_containers": 2})

    cost = cost_preview(spec, catalog, environment=None)

    assert cost["gpu"]["usd_per_gpu_hour"] == 4.5
    assert cost["idle_monthly_usd"] == pytest.approx(2 * 4.5 * HOURS_PER_MONTH)
    assert cost["fallbacks"][0]["usd_per_gpu_hour"] == 1.0
    assert cost["as_of"] == "2027-01"
    assert catalog.gpus["H200"].price_source == "user"
    assert catalog.gpus["A10G"].price_source == "user"


def test_prices_file_wrong_shape(tmp_path: Path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpus:\n  H100: 5\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_catalog(prices)

    assert "gpus.H100: expected price_per_hour" in str(caught.value)


def test_plan_shows_cost_of_every_environment(tmp_path: Path):
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text(
        "version: 1\ntarget: local\nauth: {mode: none}\n"
        "environments:\n"
        "  prod: {app: {name: md-prod, label: md-prod}, gpu: H100, "
        "autoscaling: {min_containers: 1}}\n"
        "  dev: {app: {name: md-dev, label: md-dev}, gpu: T4, model: {dtype: float16}}\n",
        encoding="utf-8")
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpus:\n  H100: {price_per_hour: 5.0}\n", encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "moondream_iac", "plan", "-f", str(deploy), "-e", "prod",
         "--prices", str(prices), "--no-refresh"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    prod = next(line for line in lines if line.startswith("  prod"))
    assert "H100 x1 $5.00/h" in prod
    assert f"${5.0 * HOURS_PER_MONTH:,.2f}/month kept warm" in prod
    assert any(line.startswith("  base") for line in lines)
    assert any(line.startswith("  dev") and "T4 x1 $0.59/h" in line for line in lines)


def test_plan_imports_no_heavy_modules(tmp_path: Path):
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text("version: 1\ntarget: local\nauth: {mode: none}\n", encoding="utf-8")
    script = (
        "import sys\n"
        "from moondream_iac.cli import app\n"
        "try:\n"
        f"    app(['plan', '-f', {str(deploy)!r}, '--json'], prog_name='moondream_iac')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'transformers', 'modal', 'fastapi', 'uvicorn', 'huggingface_hub')\n"
        "print('HEAVY', [name for name in heavy if name in sys.modules], file=sys.stderr)\n"
    )

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)

    assert '"action": "create"' in result.stdout, result.stderr
    assert "HEAVY []" in result.stderr
