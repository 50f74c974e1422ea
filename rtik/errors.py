"""The one exception tree of rtik. Every error raised on outside input derives from :class:`RtikError`."""

from __future__ import annotations


class RtikError(Exception):
    """Base of every error rtik raises on purpose."""


class BVHError(RtikError):
    """A BVH file that cannot be read; the message names the file and line."""


class SkeletonError(RtikError):
    """A skeleton that is inconsistent, or a joint name that does not exist."""


class ModelError(RtikError):
    """A model pack that is missing, corrupt or of an unsupported version."""


class BackendError(RtikError):
    """An inference backend that is unavailable or failed."""


class InputError(RtikError):
    """A frame or input file whose content is invalid (NaN, wrong joint count, unknown units, ...)."""


class ProtocolError(RtikError):
    """A wire message that does not follow rtik's protocol."""


class ConfigError(RtikError):
    """An invalid configuration file or option."""


class TransportError(RtikError):
    """A socket that cannot be bound or connected (address in use, bad endpoint, ...)."""
