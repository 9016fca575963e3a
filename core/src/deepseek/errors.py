"""Exception hierarchy of the DeepSeek Toolkit.

Every error raised for bad input or configuration derives from :class:`DeepSeekError`, and its
message names the thing at fault (file, field, name) and what to do about it. Each domain plugin
subclasses it (``MedicalError``, ...), so callers can catch one base per package.
"""

from __future__ import annotations


class DeepSeekError(Exception):
    """Base class for every error the toolkit raises on purpose.

    ``within(where)`` says once where the error happened (``reader ticks-csv (plugin
    finance)``); the message then starts with it.
    """

    where: str | None = None

    def within(self, where: str) -> DeepSeekError:
        """Prefix the message with ``where`` (only the first, innermost, call counts)."""
        if self.where is None:
            self.where = where
        return self

    def _located(self, message: str) -> str:
        return f"{self.where}: {message}" if self.where else message

    def __str__(self) -> str:
        return self._located(super().__str__())


class RegistryError(DeepSeekError):
    """A registry was used wrongly: duplicate registration, bad name."""


class UnknownNameError(RegistryError, KeyError):
    """A name is not in a registry. The message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self._located(str(self.args[0]) if self.args else "")


class NameConflictError(RegistryError):
    """Two plugins (or a plugin and the model zoo) registered the same name; neither is used
    under it until one is chosen. ``plugins`` names every claimant."""

    def __init__(self, message: str, plugins: list[str]) -> None:
        super().__init__(message)
        self.plugins = plugins


class PluginError(DeepSeekError):
    """Code of a plugin raised an exception the plugin did not turn into a DeepSeekError."""


class ModelLoadError(DeepSeekError):
    """A model file or registry entry could not be loaded."""


class InputTooLargeError(DeepSeekError):
    """An input is larger than a limit allows, found before it is decoded (an encoded image
    whose header gives more pixels than the model server's element cap): the server answers
    413, not 400."""


class UntrustedPickleError(ModelLoadError):
    """A pickled checkpoint was refused because the caller did not say it is trusted."""


class PrecisionError(DeepSeekError):
    """The requested precision cannot run on the requested device or runtime."""


class CheckpointError(DeepSeekError):
    """A training checkpoint is missing, incomplete or does not match the model."""


class PipelineError(DeepSeekError):
    """A pipeline could not run on its input."""
