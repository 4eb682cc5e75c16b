"""One vocabulary for every front door: the short names the CLI, HTTP, batches and storyboards use for
:class:`~kinema.VideoRequest` fields, the one size parser and the one model-reference parser.

Python callers use the request's own names (diffusers' call parameters). The other front doors speak shorter ones:
the CLI's ``--steps``, the HTTP API's ``steps``, ``guidance``, ``seconds`` and ``size`` (OpenAI's shape). They are
translated here, once, and an error about a translated field names the field the caller actually sent.

>>> request_fields({"prompt": "a red ball", "steps": 4, "size": "64x64", "seconds": "2"})
{'prompt': 'a red ball', 'num_inference_steps': 4, 'width': 64, 'height': 64, 'duration': 2.0}
>>> split_model_ref("builtin/builtin", None)
('builtin', 'builtin')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidRequest

__all__ = [
    "ALIASES",
    "SPOKEN_AS",
    "parse_size",
    "parse_seconds",
    "request_fields",
    "spoken_field",
    "rename_field",
    "split_model_ref",
]

#: a front door's name -> the VideoRequest field it sets (``size`` sets width and height)
ALIASES: dict[str, str] = {
    "steps": "num_inference_steps",  # CLI --steps, HTTP, storyboards
    "frames": "num_frames",  # CLI --frames
    "negative": "negative_prompt",  # CLI --negative
    "guidance": "guidance_scale",  # CLI --guidance, HTTP, storyboards
    "seconds": "duration",  # HTTP (OpenAI's videos.create): a string such as "4"
    "size": "width,height",  # CLI --size, HTTP: "WIDTHxHEIGHT"
    "edit": "source_video",  # CLI --edit: the clip to edit (``video`` is the clip to extend)
}
#: a VideoRequest field -> the alias that sets it (width and height are both spoken as ``size``)
SPOKEN_AS: dict[str, str] = {"width": "size", "height": "size"} | {
    field: alias for alias, field in ALIASES.items() if "," not in field
}

_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX*]\s*(\d{1,5})\s*$")


def parse_size(text: Any, field: str = "size") -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` as (width, height), or InvalidRequest naming ``field``."""
    m = _SIZE.match(text) if isinstance(text, str) else None
    if not m:
        raise InvalidRequest(field, f"{text!r} is not of the form WIDTHxHEIGHT", value=text, allowed="e.g. 64x64")
    return int(m.group(1)), int(m.group(2))


def parse_seconds(value: Any, field: str = "seconds") -> float:
    """A duration given as a number or as text (OpenAI's ``seconds`` is a string), or InvalidRequest."""
    if isinstance(value, bool):
        raise InvalidRequest(field, f"{value!r} is not a number of seconds", value=value)
    if isinstance(value, int | float):
        return float(value)
    try:
        if not isinstance(value, str) or len(value) > 16:
            raise ValueError(value)
        return float(value)
    except ValueError:
        raise InvalidRequest(field, f"{value!r} is not a number of seconds", value=value) from None


def request_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a front door's names into VideoRequest field names (None values are left out).

    An alias and the field it stands for may not both be given with different values.
    """
    out: dict[str, Any] = {}
    for name, value in data.items():
        if value is None:
            continue
        target = ALIASES.get(name)
        if target is None:
            out[name] = value
        elif name == "size":
            out["width"], out["height"] = parse_size(value, name)
        elif name == "seconds":
            out[target] = parse_seconds(value, name)
        else:
            out[target] = value
    for name, value in data.items():
        target = ALIASES.get(name)
        if value is None or target is None or "," in target:
            continue
        if target in data and data[target] is not None and data[target] != value:
            raise InvalidRequest(name, f"and {target} were both given, with different values; give one", value=value)
    return out


def spoken_field(field: str, given: Mapping[str, Any] | None = None) -> str:
    """The name a caller used for ``field`` (``duration`` -> ``seconds`` when the body had ``seconds``).

    With ``given`` (the caller's own keys) only aliases the caller actually used are returned; a dotted field
    (``scenes[1].num_inference_steps``) keeps its prefix.
    """
    head, dot, tail = field.rpartition(".")
    alias = SPOKEN_AS.get(tail)
    if alias is None or (given is not None and alias not in given):
        return field
    return f"{head}{dot}{alias}"


def rename_field(exc: InvalidRequest, name: str | Callable[[str], str]) -> InvalidRequest:
    """The same error naming another field (a function of the old name, or a fixed name)."""
    new = name(exc.field) if callable(name) else name
    if new == exc.field:
        return exc
    message = exc.message[len(exc.field) + 2 :] if exc.message.startswith(exc.field + ": ") else exc.message
    return InvalidRequest(new, message, value=exc.value, allowed=exc.allowed)


def split_model_ref(
    model: str | None, backend: str | None, names: list[str] | None = None
) -> tuple[str | None, str | None]:
    """(backend, model) from a model reference as every front door takes it.

    - ``backend`` given: ``model`` is that backend's model; a ``backend/`` prefix on it is dropped.
    - ``model`` alone: a backend name (``"builtin"``), ``"backend/model"`` (``"diffusers/Org/Repo"``), or a bare
      model id that exactly one backend lists (``"wan2.1-t2v-1.3b"``); a local built-in checkpoint
      (``*.safetensors``) goes to the built-in backend. Anything else is refused naming ``model``.
    """
    from .backends import backend_names, get_backend

    names = names if names is not None else backend_names()
    if backend is not None:
        if model is not None and model.startswith(backend + "/"):
            return backend, model[len(backend) + 1 :]
        return backend, model
    if model is None:
        return None, None
    if model in names:
        return model, None
    head, sep, tail = model.partition("/")
    if sep and head in names and tail:
        return head, tail
    if model.endswith(".safetensors") and "builtin" in names:
        return "builtin", model
    owners = []
    for name in names:
        try:
            if model in get_backend(name).models():
                owners.append(name)
        except Exception:  # a backend that fails to load cannot own the model
            continue
    if len(owners) == 1:
        return owners[0], model
    where = f"backends {', '.join(owners)} all list it; name one" if owners else "no backend lists it"
    raise InvalidRequest(
        "model",
        f"unknown model {model!r} ({where})",
        value=model,
        allowed="a backend name (" + ", ".join(names) + "), 'backend/model', or a model id from 'kinema models'",
    )
