"""``load()``: turn a catalogue name, hub id, local folder or ``pkg:<package>`` into an Encoder.

Resolution order for a string:
1. ``pkg:<package>[/sub/folder]``: model files carried inside an installed Python package;
2. an existing folder, or anything written like a path (``/``, ``./``, ``~``, ``C:\\``): a local folder;
3. a catalogue name (``multilingual-e5-small``): a folder of that name in ``$XLEMBED_MODELS``, the
   entry's package, or its hub id;
4. a hub id (``org/name``): the local hub cache, else a download unless the hub is offline.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import catalogue
from .backends.use_backend import USE_PACKAGE, UseEncoder, is_use_package_dir
from .checks import require_loadable
from .encoder import PRECISIONS, Encoder
from .errors import BadInputError, ModelNotFoundError, UnsupportedError
from .hub import resolve_hub_id
from .langs.coverage import declared_languages
from .manifest import read_manifest
from .paths import is_hub_id, is_windows_style, local_path, looks_like_path, model_dirs

T5_MODEL_TYPES = ("t5", "mt5", "umt5")


@dataclass
class Resolved:
    """Where a model's files are: ``kind`` is 'folder' or 'use'; ``entry`` is its catalogue entry if known."""

    kind: str
    path: Path | None
    name: str
    entry: catalogue.CatalogueEntry | None = None
    how: str = ""  # how it was found, for messages and doctor


@dataclass(frozen=True)
class LoadSpec:
    """Everything ``load()`` needs, as plain data: a server worker or another process rebuilds the same
    Encoder from it (``load(spec)``; ``LoadSpec.from_dict(spec.to_dict())`` round-trips through JSON)."""

    model: str | None = None  # catalogue name, folder, hub id or pkg:<package>; None: the default model
    precision: str | None = None
    device: str | None = None
    pooling: str | None = None
    prompts: dict[str, str] | None = field(default=None, hash=False)
    default_prompt: str | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LoadSpec":
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise BadInputError(f"load spec: unknown field(s) {', '.join(unknown)}; "
                                f"known: {', '.join(cls.__dataclass_fields__)}")
        return cls(**data)

    def load(self) -> Encoder:
        return load(self)


def load(
    name_or_path: "str | os.PathLike | LoadSpec | None" = None,
    *,
    precision: str | None = None,
    device: str | None = None,
    pooling: str | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt: str | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> Encoder:
    """Load a model as an Encoder.

    precision: fp32, bf16 (CPU or CUDA autocast), fp16 (CUDA autocast) or int8 (ONNX Runtime dynamic
        quantization, exported once and cached); None keeps the precision a saved folder was written in
        where this device runs it, else fp32.
    pooling: mean, cls or max for a folder without modules.json (default: the catalogue's pooling).
    prompts / default_prompt: override the model's prompts and the prompt name applied by default.
    allow_pickle: permit pytorch_model.bin weights (pickles can run code); safetensors is always preferred.
    trust_remote_code: permit model code shipped with the files (off unless you ask).
    A ``LoadSpec`` may be passed instead of the name and the keyword arguments (not together with them).
    """
    if isinstance(name_or_path, LoadSpec):
        given = {k: v for k, v in dict(precision=precision, device=device, pooling=pooling, prompts=prompts,
                                       default_prompt=default_prompt).items() if v is not None}
        if given or allow_pickle or trust_remote_code:
            raise BadInputError(f"load(spec) takes its settings from the LoadSpec; put {', '.join(given) or 'the flags'} "
                                "into the spec instead of passing them beside it")
        spec = name_or_path
        return load(spec.model, precision=spec.precision, device=spec.device, pooling=spec.pooling,
                    prompts=spec.prompts, default_prompt=spec.default_prompt, allow_pickle=spec.allow_pickle,
                    trust_remote_code=spec.trust_remote_code)
    if precision is not None and precision not in PRECISIONS:
        raise BadInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if pooling is not None and pooling not in ("mean", "cls", "max"):
        raise BadInputError(f"pooling must be mean, cls or max, got {pooling!r}")
    where = resolve(name_or_path)
    if where.kind == "use":
        if pooling is not None:
            raise UnsupportedError(
                f"{where.name!r} (the USE package) has its own fixed pooling; drop pooling={pooling!r} (CLI: --pooling)"
            )
        encoder = UseEncoder.create(name=where.name, precision=precision or "fp32")
    else:
        encoder = _load_folder(where, precision, device, pooling, prompts, default_prompt, allow_pickle, trust_remote_code)
    if where.entry is not None and where.entry.matryoshka_dims and encoder.dim == where.entry.dim:
        encoder.info.matryoshka_dims = where.entry.matryoshka_dims
    encoder.info.languages, encoder.info.languages_source = declared_languages(where)
    return encoder


def resolve(name_or_path: str | os.PathLike | None) -> Resolved:
    """Find the files for a model reference without loading it."""
    if name_or_path is None:
        name_or_path = catalogue.default_name()
    spec = os.fspath(name_or_path).strip()
    if not spec:
        raise BadInputError(
            "the model name is empty; give a catalogue name (see `xlembed models`), a folder, a hub id or "
            "pkg:<package>, or leave the model out (None; CLI: no --model) for the default model"
        )
    if spec.startswith("pkg:"):
        return _resolve_package(spec[4:])
    path = Path(spec).expanduser()
    if path.is_dir():
        return Resolved("folder", path, path.resolve().name, catalogue.get(path.resolve().name), "local folder")
    if path.exists() and not is_windows_style(spec):
        raise ModelNotFoundError(
            f"{spec!r} is a file, not a model folder; pass the folder that holds the model files "
            f"({path.absolute().parent} if this file is one of them)"
        )
    if looks_like_path(spec) or _starts_with_local_folder(spec):
        path = local_path(spec)  # raises for a Windows path on POSIX
        why = "" if looks_like_path(spec) else (
            f"; it is read as a local path, not a hub id, because {spec.split('/', 1)[0]}/ is a folder here")
        raise ModelNotFoundError(
            f"model folder {spec!r} does not exist (looked in {path.expanduser().absolute()}); check the path{why}"
        )
    entry = catalogue.get(spec)
    if entry is not None:
        return _resolve_entry(entry)
    if is_hub_id(spec):
        try:
            found = resolve_hub_id(spec)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{exc} (no local folder {path.absolute()} exists either)") from None
        return Resolved("folder", found, spec.rsplit("/", 1)[-1], None, "hub cache")
    raise ModelNotFoundError(
        f"{spec!r} is not a folder, a catalogue name (see `xlembed models`), a hub id (org/name) or pkg:<package>"
    )


def _starts_with_local_folder(spec: str) -> bool:
    """``models/my-model`` where ``models/`` is a folder here: a relative path the user meant, not a hub id."""
    first = spec.replace("\\", "/").split("/", 1)
    return len(first) == 2 and Path(first[0]).expanduser().is_dir()


def _resolve_entry(entry: catalogue.CatalogueEntry) -> Resolved:
    if entry.backend == "use":
        return Resolved("use", None, entry.name, entry, f"package {entry.package}")
    candidates = {entry.name}
    if entry.hub_id:
        candidates.add(entry.hub_id.rsplit("/", 1)[-1])
    for base in model_dirs():
        for cand in sorted(candidates):
            if (base / cand).is_dir():
                return Resolved("folder", base / cand, entry.name, entry, f"models folder {base}")
    if entry.package and importlib.util.find_spec(entry.package) is not None:
        found = _resolve_package(entry.package)
        return Resolved(found.kind, found.path, entry.name, entry, found.how)
    if not entry.hub_id:
        raise ModelNotFoundError(f"catalogue model {entry.name!r} has no hub id; install its package {entry.pip_package!r}")
    try:
        path = resolve_hub_id(entry.hub_id)
    except ModelNotFoundError as exc:
        dirs = os.pathsep.join(str(d) for d in model_dirs())
        raise ModelNotFoundError(
            f"{exc}; or put the folder at <dir>/{entry.name} in one of the model folders ({dirs}; set XLEMBED_MODELS)"
        ) from None
    return Resolved("folder", path, entry.name, entry, "hub cache")


def _resolve_package(spec: str) -> Resolved:
    package, _, sub = spec.partition("/")
    if not package.isidentifier():
        raise BadInputError(f"pkg:{spec}: {package!r} is not a Python package name (write pkg:<import name>[/sub/folder])")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(f"package {package!r} is not installed (pkg:{spec}); install it with pip first")
    root = Path(list(found.submodule_search_locations)[0])
    if package == USE_PACKAGE or is_use_package_dir(root):
        entry = catalogue.get(catalogue.default_name())
        return Resolved("use", None, entry.name if entry else "use-multilingual", entry, f"package {package}")
    if sub:
        folder = root / sub
        if not folder.is_dir():
            raise ModelNotFoundError(f"package {package!r} has no folder {sub!r} ({folder})")
        return Resolved("folder", folder, folder.name, catalogue.get(package), f"package {package}")
    folders = _model_folders_in(root)
    if not folders:
        raise ModelNotFoundError(f"package {package!r} ({root}) carries no model folder (no config.json or modules.json inside)")
    if len(folders) > 1:
        listed = ", ".join(f"pkg:{package}/{f.relative_to(root).as_posix()}" for f in folders)
        raise BadInputError(f"package {package!r} carries several model folders; name one: {listed}")
    entry = next((e for e in catalogue.entries() if e.package == package), None)
    return Resolved("folder", folders[0], entry.name if entry else package, entry, f"package {package}")


def _model_folders_in(root: Path, depth: int = 3) -> list[Path]:
    """Folders under ``root`` (itself included) that hold a model: modules.json, or config.json with weights."""
    found: list[Path] = []
    frontier = [root]
    for _ in range(depth + 1):
        nxt = []
        for folder in frontier:
            if (folder / "modules.json").is_file() or (
                (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
            ):
                found.append(folder)
                continue
            nxt.extend(p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith((".", "__")))
        frontier = nxt
    return found


@dataclass
class _Request:
    """What ``load()`` was asked for, handed to the opener of the folder's format."""

    where: Resolved
    report: object  # checks.FolderReport
    precision: str | None
    device: str | None
    pooling: str | None
    prompts: dict[str, str] | None
    default_prompt: str | None
    allow_pickle: bool
    trust_remote_code: bool


def _load_folder(where, precision, device, pooling, prompts, default_prompt, allow_pickle, trust_remote_code) -> Encoder:
    report = require_loadable(where.path, allow_pickle)
    request = _Request(where, report, precision, device, pooling, prompts, default_prompt, allow_pickle, trust_remote_code)
    return OPENERS[report.kind](request)


def _open_onnx(request: _Request) -> Encoder:
    from .backends.onnx_backend import OnnxEncoder

    folder = request.where.path
    if request.pooling is not None:
        _refuse_other_pooling(folder, request.pooling, read_manifest(folder).pooling)
    return OnnxEncoder.from_folder(
        folder, name=request.where.name, precision=request.precision, device=request.device or "cpu",
        prompts=request.prompts, default_prompt_name=request.default_prompt,
    )


def _open_transformer(request: _Request) -> Encoder:
    """A sentence-transformers or plain transformers folder: torch, or the cached int8 ONNX export of it."""
    from .backends.torch_backend import TorchEncoder, read_json

    where, report, pooling = request.where, request.report, request.pooling
    folder = where.path
    manifest = read_manifest(folder)
    if pooling is not None and report.has_modules_json:
        _refuse_other_pooling(folder, pooling, folder_pooling(folder))
    entry = where.entry
    config = read_json(folder / "config.json") if (folder / "config.json").is_file() else {}
    pooling_source = "argument"
    if not report.has_modules_json and pooling is None:
        if entry is not None and entry.pooling:
            pooling, pooling_source = entry.pooling, f"catalogue entry {entry.name!r}"
        elif config.get("model_type") in T5_MODEL_TYPES:
            pooling, pooling_source = "mean", "encoder-only T5 default"
    merged = dict(entry.prompts) if entry else {}
    merged.update(_folder_prompts(folder))
    if request.prompts is not None:
        merged = dict(request.prompts)
    wanted = request.precision or _default_precision(manifest, request.device)
    default_name = (request.default_prompt or None) if request.default_prompt is not None else _default_prompt_name(
        folder, manifest, entry, merged
    )

    def torch_encoder(precision: str) -> TorchEncoder:
        encoder = TorchEncoder.from_folder(
            folder, name=where.name, precision=precision, device=request.device, pooling=pooling,
            pooling_source=pooling_source, prompts=merged, default_prompt_name=default_name,
            allow_pickle=request.allow_pickle, trust_remote_code=request.trust_remote_code,
            has_modules_json=report.has_modules_json,
        )
        if (folder / "compress.json").is_file():  # pruned units cut out, shared layers tied: same outputs, faster
            from .compress.layers import apply_structure, structure_of
            from .compress.folder import read_record

            apply_structure(encoder.model, structure_of(read_record(folder)))
        return encoder

    if wanted != "int8":
        return torch_encoder(wanted)
    from .backends.onnx_backend import OnnxEncoder
    from .compress.artifacts import int8_folder

    # exported and quantized once into the cache; a later load finds it without loading torch at all
    onnx_folder = int8_folder(folder, None if report.has_modules_json else pooling, lambda: torch_encoder("fp32"))
    return OnnxEncoder.from_folder(
        onnx_folder, name=where.name, precision="int8", device="cpu", prompts=merged, default_prompt_name=default_name
    )


def _open_static(request: _Request) -> Encoder:
    return _load_static(request.where, request.precision, request.device, request.pooling, request.prompts,
                        request.default_prompt)


# folder format (checks.FolderReport.kind) -> the function that opens it as an Encoder
OPENERS = {
    "sentence-transformers": _open_transformer,
    "transformers": _open_transformer,
    "onnx": _open_onnx,
    "static": _open_static,
}


def folder_pooling(folder: Path) -> str | None:
    """The pooling mode a sentence-transformers folder's Pooling module sets ('mean', 'cls', 'max', ...), if any."""
    from .backends.torch_backend import read_json

    for module in read_json(folder / "modules.json"):
        if str(module.get("type", "")).endswith("Pooling"):
            config = read_json(folder / module.get("path", "") / "config.json")
            if isinstance(config.get("pooling_mode"), str):
                return config["pooling_mode"]
            modes = [re.sub(r"_tokens?$", "", k[len("pooling_mode_"):]) for k, v in config.items()
                     if k.startswith("pooling_mode_") and v is True]
            return "+".join(modes) or None
    return None


def _refuse_other_pooling(folder: Path, asked: str, own: str | None) -> None:
    """A folder that records its pooling (modules.json, an ONNX graph) cannot be run with another one."""
    if own == asked:
        return
    raise UnsupportedError(
        f"{folder} sets its own pooling ({own or 'none'}, in its modules.json or exported graph), so pooling={asked!r} "
        f"(CLI: --pooling) cannot apply; drop it, or load the transformer folder inside it to choose a pooling"
    )


def _load_static(where, precision, device, pooling, prompts, default_prompt) -> Encoder:
    """A static (token-vector table) folder: numpy only, on the CPU, mean pooling."""
    from .backends.static_backend import StaticEncoder

    if device not in (None, "cpu"):
        raise UnsupportedError(f"static model {where.path} runs on the CPU in numpy only; drop device={device!r} (CLI: --device)")
    if pooling not in (None, "mean"):
        raise UnsupportedError(f"static model {where.path} averages its token vectors; drop pooling={pooling!r} (CLI: --pooling)")
    return StaticEncoder.from_folder(
        where.path, name=where.name, precision=precision, prompts=prompts, default_prompt_name=default_prompt
    )


def _folder_prompts(folder: Path) -> dict[str, str]:
    from .backends.torch_backend import read_json

    path = folder / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    return {k: v for k, v in (read_json(path).get("prompts") or {}).items() if isinstance(v, str)}


def _default_prompt_name(folder: Path, manifest, entry, prompts: dict[str, str]) -> str | None:
    """The prompt applied when encode() gets prompt=None.

    A manifest or the folder's own default_prompt_name wins; then the catalogue entry's; then, for a
    folder whose prompts include 'query' (the e5 convention), 'query', as MTEB evaluates e5 models.
    """
    from .backends.torch_backend import read_json

    if manifest is not None and manifest.default_prompt_name:
        return manifest.default_prompt_name
    path = folder / "config_sentence_transformers.json"
    if path.is_file():
        name = read_json(path).get("default_prompt_name")
        if name:
            return name
    if entry is not None and entry.default_prompt:
        return entry.default_prompt
    if prompts.get("query"):
        return "query"
    return None


def _default_precision(manifest, device: str | None) -> str:
    if manifest is None or manifest.precision in ("fp32", "int8"):
        return "fp32"
    on_gpu = bool(device and device.startswith("cuda"))
    if manifest.precision == "fp16":
        return "fp16" if on_gpu else "fp32"
    return "bf16"  # bf16 weights: run bf16 autocast, on CPU or GPU
