"""CLI commands ``langs`` (the language mix of a file, and a model's coverage of it) and ``recommend``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .cli import app, format_table, handle_errors
from .errors import BadInputError


@app.command()
@handle_errors
def langs(
    input: Optional[str] = typer.Option(None, "--input", "-i", help="Text file (one text per line), .jsonl file, or - for stdin."),
    field: Optional[str] = typer.Option(None, "--field", help="Read JSON Lines input and take the text from this field."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Also say which of the languages this model was trained on (its files are not loaded)."),
    sample: int = typer.Option(10_000, "--sample", help="Detect on N texts spread over the input (0: every text)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    list_codes: bool = typer.Option(False, "--list", help="List the languages the detector knows and exit."),
) -> None:
    """The language mix of a file (detected offline, 176 languages), and a model's coverage of it."""
    from .io import read_texts
    from .langs.codes import name
    from .langs.detect import detectable, language_mix

    if list_codes:
        codes = detectable()
        typer.echo(format_table([{"code": c, "name": name(c)} for c in codes]))
        typer.echo(f"\n{len(codes)} languages", err=True)
        return
    if input is None:
        raise BadInputError("give --input FILE (or - for stdin), or --list for the languages the detector knows")
    if sample < 0:
        raise BadInputError(f"--sample must be 0 (every text) or a positive count, got {sample}")
    texts = read_texts(input, field=field)
    if not any(t.strip() for t in texts):
        raise BadInputError(f"{input} has no text: it is empty or holds only blank lines")
    mix = language_mix(texts, sample=sample or None)
    rows = mix.rows()
    check = None
    if model is not None:
        from .langs.coverage import check as coverage_check, model_languages
        from .langs.codes import covered

        model_name, languages, source = model_languages(model)
        check = coverage_check(mix, model_name, languages)
        for row in rows:
            code = row["language"]
            row[f"trained on by {model_name}"] = ("unknown" if languages is None else
                                                  "-" if code == "-" else "yes" if covered(code, languages) else "NO")
    if as_json:
        data = {"mix": mix.as_dict(), "rows": rows}
        if check is not None:
            data["coverage"] = {**check.as_dict(), "languages_source": source}
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        typer.echo(format_table(rows))
    scope = f"every one of {mix.n_texts} texts" if mix.n_sampled == mix.n_texts else f"{mix.n_sampled} of {mix.n_texts} texts, spread over the input"
    typer.echo(f"(detected on {scope})", err=True)
    if check is not None:
        if languages is None:
            typer.echo(f"note: the languages of {model_name} are {source}", err=True)
        elif not check.ok:
            from .langs.coverage import message

            typer.echo(f"warning: {message(check, off_switch=False)}", err=True)
        else:
            typer.echo(f"{model_name} was trained on every language that holds 5% or more of the texts ({source})", err=True)


@app.command()
@handle_errors
def recommend(
    langs: str = typer.Option(..., "--langs", help="Your languages, comma-separated ISO 639 codes or BCP-47 tags, e.g. ja,he,fi."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Drop candidates slower than this for a 2-sentence request (ms)."),
    max_memory_mb: Optional[float] = typer.Option(None, "--max-memory-mb", help="Drop candidates whose measured peak memory (RSS) is above this (MB)."),
    max_disk_mb: Optional[float] = typer.Option(None, "--max-disk-mb", help="Drop candidates whose files take more than this (MB)."),
    results: Optional[list[str]] = typer.Option(None, "--from", help="results.json of `xlembed bench` (or its folder; repeatable). Default: the measurements shipped with xlembed (shared Tatoeba sets, one 2-core CPU machine)."),
    top: int = typer.Option(5, "--top", help="Show the N best candidates (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
) -> None:
    """Rank models and precisions for your languages and limits, from bench measurements, with reasons."""
    from .langs.recommend import recommend as rank, rows

    if top < 0:
        raise BadInputError(f"--top must be 0 (all) or a positive count, got {top}")
    found = rank(langs, max_latency_ms=max_latency_ms, max_memory_mb=max_memory_mb, max_disk_mb=max_disk_mb,
                 results=[Path(p) for p in results] if results else None)
    table = rows(found, top or None)
    if as_json:
        excluded = [{"model": c.model, "precision": c.precision, "reason": why} for c, why in found.excluded]
        typer.echo(json.dumps({"langs": found.langs, "ranked": table, "excluded": excluded,
                               "unmeasured": found.unmeasured, "sources": found.sources}, indent=2, ensure_ascii=False))
        return
    if table:
        typer.echo(format_table([{k: v for k, v in row.items() if k != "why"} for row in table]))
        typer.echo("")
        for row in table:
            typer.echo(f"{row['rank']}. {row['model']} {row['precision']}: {row['why']}")
    else:
        typer.echo("no candidate meets the limits")
    for cand, why in found.excluded:
        typer.echo(f"excluded: {cand.model} {cand.precision}: {why}", err=True)
    if found.unmeasured:
        typer.echo(f"note: no Tatoeba measurement of {', '.join(found.unmeasured)} in the results; their rank rests on "
                   "the languages each model lists as trained on", err=True)
    typer.echo(f"(measurements: {', '.join(found.sources)})", err=True)
    if not table:
        raise typer.Exit(1)
