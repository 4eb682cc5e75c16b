"""Kinema: text (and images, and earlier clips) to video, with any engine.

>>> import kinema
>>> result = kinema.generate("A cinematic sunrise over mountains, clouds moving slowly", output="sunrise.mp4")
>>> result.path, result.seed                                     # doctest: +SKIP

Everything a user needs is one hop from here: :func:`generate`, :func:`plan` (a dry run: what would run, checked,
nothing generated), :class:`VideoRequest`, :class:`Video`, the backends (:func:`list_backends`, :func:`get_backend`)
and the errors. docs/architecture.md maps the rest.
"""

from ._version import __version__
from .backends import (
    Backend,
    BackendInfo,
    BaseBackend,
    CancelToken,
    Capabilities,
    get_backend,
    list_backends,
    register_backend,
)
from .engine import Result, finish, generate, run
from .errors import (
    BackendUnavailable,
    Cancelled,
    ContentRejected,
    GenerationFailed,
    InvalidRequest,
    KinemaError,
    MissingExtra,
    ModelNotFound,
    ProviderError,
    ProviderTimeout,
    RankLost,
    RateLimited,
)
from .planner import Plan, plan
from .progress import ProgressEvent
from .request import VideoRequest
from .video import Video, read_metadata

__all__ = [
    "__version__",
    # the one generate path: plan -> run -> finish
    "generate",
    "plan",
    "Plan",
    "run",
    "finish",
    "Result",
    "VideoRequest",
    "Video",
    "read_metadata",
    "ProgressEvent",
    "CancelToken",
    # backends
    "Backend",
    "BaseBackend",
    "BackendInfo",
    "Capabilities",
    "get_backend",
    "list_backends",
    "register_backend",
    # errors
    "KinemaError",
    "InvalidRequest",
    "BackendUnavailable",
    "MissingExtra",
    "ModelNotFound",
    "ContentRejected",
    "ProviderError",
    "RateLimited",
    "ProviderTimeout",
    "Cancelled",
    "GenerationFailed",
    "RankLost",
]
