"""Exception hierarchy of the DeepSeek Toolkit.

Every error raised for bad input or configuration derives from :class:`DeepSeekError`, and its
message names the thing at fault (file, field, name) and what to do about it. Each domain plugin
subclasses it (``MedicalError``, ...), so callers can catch one base per package.
"""

from __future__ import annotations


class DeepSeekError(Exception):
    """Base class for every error the toolkit raises on purpose."""


class RegistryError(DeepSeekError):
    """A registry was used wrongly: duplicate registration, bad name."""


class UnknownNameError(RegistryError, KeyError):
    """A name is not in a registry. The message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(DeepSeekError):
    """A model file or registry entry could not be loaded."""


class UntrustedPickleError(ModelLoadError):
    """A pickled checkpoint was refused because the caller did not say it is trusted."""


class PrecisionError(DeepSeekError):
    """The requested precision cannot run on the requested device or runtime."""


class CheckpointError(DeepSeekError):
    """A training checkpoint is missing, incomplete or does not match the model."""


class PipelineError(DeepSeekError):
    """A pipeline could not run on its input."""
