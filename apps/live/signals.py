"""Bridge until the check-in services call `broadcast.fleet_changed()` themselves.

Every accepted native check-in writes one HealthReport; the fleet pages and the wall then
need a recompute. `fleet_changed` is throttled fleet-wide (one message per second per
group, a Redis SET NX per call), so the hot path pays one Redis round trip, after commit.
Once apps.fleet.services.device_checkin calls fleet_changed() itself this receiver can go;
keeping both is harmless, they share the throttle.
"""

from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.fleet.models import HealthReport

from .broadcast import fleet_changed


@receiver(post_save, sender=HealthReport, dispatch_uid="live-fleet-changed-on-report")
def _report_saved(sender, instance, created, **kwargs):
    if created:
        fleet_changed()
