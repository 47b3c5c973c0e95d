"""The model card (README.md) of a compressed model: every step with its figures, and the checks."""

from __future__ import annotations

from pathlib import Path

from ..distill.card import write_model_card


def compress_card(folder: Path, out: Path, record: dict) -> Path:
    run = record.get("run") or {}
    steps = record.get("steps") or []
    facts = [
        ("Parent", f"{run.get('model')} ({record.get('parent')})"),
        ("Kept languages", ", ".join(run.get("languages", []))),
        ("Steps", " -> ".join(run.get("steps", [s.get("step") for s in steps]))),
        ("Text used", _inputs(run.get("inputs") or {})),
        ("Time", f"{run.get('seconds')} s"),
    ]
    for step in steps:
        facts.append((f"Step {step.get('label', step.get('step'))}", _describe(step)))
    parent = run.get("parent_check") or {}
    rows = [{"after": "parent", "dev cosine to parent": parent.get("dev_cosine_to_parent"),
             **{f"tatoeba {k}": v for k, v in (parent.get("tatoeba_sample") or {}).items()}}]
    for row in run.get("results", []):
        rows.append({"after": row["step"], "dev cosine to parent": row.get("dev_cosine_to_parent"),
                     **{f"tatoeba {k}": v for k, v in (row.get("tatoeba_sample") or {}).items()},
                     "parameters": row.get("parameters"), "disk MB": row.get("disk_mb")})
    rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
    tables = {"Checks after each step (dev texts; Tatoeba sample of the kept languages)": rows}
    fidelity = next((s.get("fidelity") for s in steps if s.get("step") == "trim"), None)
    if fidelity:
        tables["Vocabulary trim: held-out text tokenized exactly as by the parent (%), unknown tokens (%)"] = fidelity
    usage = (f"import xlembed\nmodel = xlembed.load({str(out)!r})\n"
             "vectors = model.encode(['今日は天気がいい', 'The weather is nice today'])")
    return write_model_card(folder, f"{run.get('model')} compressed for {', '.join(run.get('languages', []))}", facts,
                            tables, usage, run.get("command"), intro="Compressed with xlembed (`xlembed compress`).")


def _inputs(inputs: dict) -> str:
    return (f"{inputs.get('source')}: {inputs.get('train_texts')} training texts, {inputs.get('dev_texts')} dev texts, "
            f"{inputs.get('dev_pairs')} dev pairs")


def _describe(step: dict) -> str:
    kind = step.get("step")
    params = step.get("parameters") or {}
    share = f"; parameters {params.get('parent'):,} -> {params.get('child'):,}" if params.get("parent") and params.get("child") else ""
    if kind == "trim":
        return (f"{step['pieces']['parent']:,} -> {step['pieces']['child']:,} pieces ({step['tokenizer']}), "
                f"{step['parameters']['share']:.1%} of the parameters")
    if kind == "drop":
        return f"removed layers {step['removed']} of {step['layers_before']} ({step['chosen_by']}){share}"
    if kind == "prune":
        return f"{step['heads_pruned']} heads and {step['neurons_pruned']} FFN neurons pruned ({step['chosen_by']}){share}"
    if kind == "share":
        return f"layer groups {step['groups']} share weights{share}"
    if kind == "recover":
        best = step.get("best") or {}
        return (f"{step['steps']} steps on {step['texts']:,} texts in {step['seconds']} s, dev MSE "
                f"{(step.get('start') or {}).get('dev_mse', float('nan')):.2e} -> {best.get('dev_mse', float('nan')):.2e}")
    if kind in ("int8", "onnx"):
        return f"ONNX {step['precision']}, {step['disk_mb']} MB"
    return kind
