"""Cost preview: what a deployment costs at rest and per active container-hour.

Prices come from the GPU catalog (``data/gpus.yaml``, or ``--prices FILE``). A GPU with
no known price is shown as unknown, never as zero. Figures are estimates: they count
GPU time only, not CPU, memory or storage.
"""

from __future__ import annotations

from typing import Any

from moondream_iac.spec.gpus import GpuCatalog
from moondream_iac.spec.schema import DeploySpec

HOURS_PER_MONTH = 730


def cost_preview(spec: DeploySpec, catalog: GpuCatalog, *, environment: str | None) -> dict[str, Any]:
    """Return the cost of ``spec`` in US dollars; None where a price is unknown.

    ``idle_monthly_usd`` is the bill of ``min_containers`` running all month on the
    first GPU type; ``max_monthly_usd`` is the same with ``max_containers`` (None when
    unbounded). Fallback types list their own hourly prices.
    """
    autoscaling = spec.autoscaling
    primary = _gpu_price(spec.gpu.type, spec.gpu.count, catalog)
    per_hour = primary["usd_per_container_hour"]

    max_monthly = None
    if per_hour is not None and autoscaling.max_containers is not None:
        max_monthly = round(autoscaling.max_containers * per_hour * HOURS_PER_MONTH, 2)
    return {
        "environment": environment,
        "target": spec.target,
        # The local target runs on this machine: no Modal bill.
        "billed": spec.target == "modal",
        "gpu": primary,
        "fallbacks": [_gpu_price(name, spec.gpu.count, catalog) for name in spec.gpu.fallbacks],
        "min_containers": autoscaling.min_containers,
        "max_containers": autoscaling.max_containers,
        "idle_monthly_usd": (
            None if per_hour is None
            else round(autoscaling.min_containers * per_hour * HOURS_PER_MONTH, 2)
        ),
        "max_monthly_usd": max_monthly,
        "hours_per_month": HOURS_PER_MONTH,
        "as_of": catalog.as_of,
    }


def _gpu_price(name: str, count: int, catalog: GpuCatalog) -> dict[str, Any]:
    base = name.rstrip("!")
    info = catalog.gpus.get(base)
    price = info.price_per_hour if info else None
    source_key = info.price_source if info else "none"
    return {
        "type": name,
        "count": count,
        "usd_per_gpu_hour": price,
        "usd_per_container_hour": None if price is None else round(price * count, 4),
        "price_source": catalog.sources.get(source_key, source_key),
    }
