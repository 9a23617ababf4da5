"""Placeholder: being written (cohort filter language)."""

from django.db.models import Q


class FilterError(ValueError):
    def __init__(self, message: str, position: int = 0):
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position


def compile_filter(text: str) -> Q:
    raise FilterError("filter language not implemented yet", 0)
