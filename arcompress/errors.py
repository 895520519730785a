"""The error every reader raises for bad input (container, tapcode, bitio)."""


class FormatError(ValueError):
    """Not an .arc file, or a corrupt / truncated one."""
