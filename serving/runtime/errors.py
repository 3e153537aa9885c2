"""One small exception tree; `serving.runtime.triton_adapter` maps it to Triton status codes in one place."""

from __future__ import annotations


class ServingError(Exception):
    """Base class. `code` names the Triton error code the adapter answers with."""

    code = "INTERNAL"


class InvalidInputError(ServingError, ValueError):
    """The request is wrong: a missing input, a value out of range, an undecodable image."""

    code = "INVALID_ARG"


class ResourceExhaustedError(ServingError):
    """The pipeline ran out of memory (GPU or host) on an otherwise valid request."""

    code = "UNAVAILABLE"


class PipelineError(ServingError):
    """The pipeline failed on a valid request for a reason that is not the caller's."""

    code = "INTERNAL"


class NonFiniteOutputError(PipelineError):
    """The pipeline returned NaN or infinite values (fp16 overflow): never a black 'success'."""


class CheckpointError(ServingError):
    """Weights are missing, unsafe (pickle) or do not match the model."""

    code = "INTERNAL"


class DeadlineExpiredError(ServingError):
    """The caller's deadline passed before the request's pipeline call: not computed, since
    nobody waits for the answer. UNAVAILABLE (HTTP 503), like Triton's own queue timeout."""

    code = "UNAVAILABLE"
