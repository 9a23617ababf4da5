"""Entry points other apps call. Kept free of heavy imports: the check-in path imports this."""

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def combination_created(combination_id: int) -> None:
    """A new Combination row exists: after commit, ask a worker whether it is certified."""

    def send() -> None:
        from .tasks import combination_check

        try:
            combination_check.delay(combination_id)
        except Exception:
            log.warning("could not enqueue the certification check of combination %s", combination_id, exc_info=True)

    transaction.on_commit(send)
