"""User-facing errors: the CLI prints ``error: <message>`` on one line and exits non-zero."""


class UlmError(Exception):
    """An expected failure with a one-line, actionable message (file, column, rule where relevant)."""


class ContractError(UlmError):
    """Landing data breaks the contract (schema drift, invalid ratio above threshold)."""
