"""The OpenAI embeddings API as data: parse and check a request body, shape the response.

Request: ``input`` (a string, a list of strings, a list of token ids or a list of such lists: ids of the model's
own tokenizer, decoded to text), ``model``, ``encoding_format`` (float | base64: raw little-endian float32),
``dimensions`` (only for models trained for shorter vectors), ``user`` (accepted, unused). Extensions:
``prompt`` (a prompt name of the model such as 'query' / 'passage', a literal prefix, or '' for none; default the
model's own) and ``truncate`` (false: inputs longer than the model takes are a 400 instead of being cut).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from ..encoder import l2_normalize
from ..errors import BadInputError

FORMATS = ("float", "base64")


class ApiError(Exception):
    """An error with its HTTP status and OpenAI error type; the message is for the person who sent the request."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class EmbeddingRequest:
    model: str
    inputs: list  # str or list[int]
    encoding_format: str = "float"
    dimensions: int | None = None
    prompt: str | None = None
    truncate: bool | None = None  # None: the server's default


def parse_request(body: object, max_inputs: int) -> EmbeddingRequest:
    """Check a decoded JSON body; raise ApiError(400) naming the field that is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required: the name of a served model (GET /v1/models lists them)",
                       param="model")
    if "input" not in body:
        raise ApiError(400, "'input' is required: a string, a list of strings, or token ids", param="input")
    inputs = _inputs(body["input"])
    if len(inputs) > max_inputs:
        raise ApiError(400, f"'input' holds {len(inputs)} items; this server takes at most {max_inputs} per request "
                       "(--max-inputs): send them in several requests", param="input", code="too_many_inputs")
    fmt = body.get("encoding_format") or "float"
    if fmt not in FORMATS:
        raise ApiError(400, f"'encoding_format' must be float or base64, got {fmt!r}", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise ApiError(400, f"'dimensions' must be a positive integer, got {dims!r}", param="dimensions")
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ApiError(400, f"'prompt' must be a string (a prompt name such as 'query', a literal prefix, or '' for "
                       f"none), got {type(prompt).__name__}", param="prompt")
    truncate = body.get("truncate")
    if truncate is not None and not isinstance(truncate, bool):
        raise ApiError(400, f"'truncate' must be true or false, got {truncate!r}", param="truncate")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, f"'user' must be a string, got {type(user).__name__}", param="user")
    return EmbeddingRequest(model=model, inputs=inputs, encoding_format=fmt, dimensions=dims, prompt=prompt,
                            truncate=truncate)


def _inputs(value: object) -> list:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ApiError(400, f"'input' must be a string, a list of strings or token ids, got {type(value).__name__}",
                       param="input")
    if not value:
        raise ApiError(400, "'input' is empty: send at least one string", param="input")
    if all(_is_int(v) for v in value):  # one input given as token ids
        return [_token_ids(value, "input")]
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise ApiError(400, f"input[{i}] is an empty string; every input needs text", param="input")
            out.append(item)
        elif isinstance(item, list):
            out.append(_token_ids(item, f"input[{i}]"))
        else:
            raise ApiError(400, f"input[{i}] is {type(item).__name__}; give strings or lists of token ids",
                           param="input")
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _token_ids(value: list, where: str) -> list[int]:
    if not value:
        raise ApiError(400, f"{where} is an empty list of token ids", param="input")
    bad = next((v for v in value if not _is_int(v) or v < 0), None)
    if bad is not None:
        raise ApiError(400, f"{where}: token ids must be non-negative integers, got {bad!r}", param="input")
    return list(value)


def check_dimensions(full: int, dimensions: int | None, matryoshka_dims: tuple[int, ...], model: str) -> None:
    """A 400 unless ``dimensions`` is the model's own size or one it was trained for (Matryoshka)."""
    if dimensions is None or dimensions == full or dimensions in matryoshka_dims:
        return
    trained = f"; it was trained for {', '.join(map(str, matryoshka_dims))}" if matryoshka_dims else \
        " and was not trained to give shorter ones (Matryoshka), so cutting them would lose quality silently"
    raise ApiError(400, f"model {model!r} gives {full}-dimensional vectors{trained}. Drop 'dimensions' or send "
                   f"{full}", param="dimensions", code="unsupported_dimensions")


def output_vectors(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The vectors at the requested size (checked by ``check_dimensions`` before the work was queued): the model's
    own, or (Matryoshka models) its first k dims renormalized."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    return l2_normalize(vectors[:, :dimensions])


def response_body(vectors: np.ndarray, fmt: str, model: str, tokens: int) -> dict:
    if fmt == "base64":
        rows = np.ascontiguousarray(vectors, dtype="<f4")
        data = [{"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode("ascii")}
                for i, row in enumerate(rows)]
    else:
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": int(tokens), "total_tokens": int(tokens)}}


def check_prompt(encoder, prompt: str | None) -> None:
    try:
        encoder.resolve_prompt(prompt)
    except BadInputError as exc:
        raise ApiError(400, str(exc), param="prompt") from None
