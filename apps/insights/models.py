from django.db import models
from django.utils import timezone

from apps.fleet.models import Combination


class CombinationHealth(models.Model):
    """Health counters of one combination over one 5-minute bucket (a maintained rollup of HealthReport)."""

    combination = models.ForeignKey(Combination, on_delete=models.CASCADE, related_name="+")
    bucket = models.DateTimeField()
    reports = models.PositiveIntegerField(default=0)
    exposure_s = models.BigIntegerField(default=0)
    crashes = models.PositiveIntegerField(default=0)
    failed_health_checks = models.PositiveIntegerField(default=0)
    # Deployments that finished "failed" in the bucket, by the device's combination then.
    failed_installs = models.PositiveIntegerField(default=0)
    finished_installs = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-bucket", "combination"]
        constraints = [models.UniqueConstraint(fields=["combination", "bucket"], name="combination_health_once")]
        # The heatmap sums every combination over the window: a range scan on bucket.
        indexes = [models.Index(fields=["bucket"], name="combination_health_bucket_idx")]

    def __str__(self) -> str:
        return f"{self.combination_id} @ {self.bucket:%Y-%m-%d %H:%M}"


class RollupCursor(models.Model):
    """How far the rollup has read: health reports by id, finished deployments by time.

    Reports are read by id, not by `received_at`: the check-in buffer writes them up to a flush
    interval (or a worker outage) after they were stamped, so a time cursor would skip late ones.
    A run takes ids up to the highest id the *previous* run saw, so an insert whose transaction
    was still open then has had a whole rollup interval to commit.
    """

    name = models.CharField(max_length=40, primary_key=True)
    # Deployments finished before this instant are counted.
    upto = models.DateTimeField(default=timezone.now)
    # Health reports with id <= upto_id are counted; seen_max_id is the next run's limit.
    upto_id = models.BigIntegerField(default=0)
    seen_max_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} upto {self.upto:%Y-%m-%d %H:%M:%S} / report #{self.upto_id}"
