"""Domain errors of the lab, in one place (after PyLabRobot's errors module)."""


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""


class ConfigError(LabError, ValueError):
    """A configuration or parameter file is malformed; the message names the file and key."""


class InvalidGoal(LabError, ValueError):
    """A goal or request cannot be carried out as asked; nothing was changed."""


class BackendUnavailable(LabError, RuntimeError):
    """A chosen backend needs a package that is not installed; the message names it."""


class StationFault(LabError, RuntimeError):
    """A station step failed (real or injected fault)."""
