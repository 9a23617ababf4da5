"""Which devices a wave takes: deterministic, spread over the cohort, covering its segments first.

Every device gets a rank from a hash of (rollout id, device id): the same rollout always ranks
the same devices the same way (a restarted engine picks the same devices), and different
rollouts sample different devices. Ranked order is a uniform random sample, so a percent wave
is representative. A small wave is stratified: it first takes the best-ranked device of every
segment (hardware model × region × current combination), biggest segments first, and only
then fills up in rank order.
"""

import hashlib
import math
from dataclasses import dataclass, field

from django.db.models import Q, QuerySet

from apps.fleet.models import Cohort, Combination, Device

from .models import ComponentLock, Deployment, Rollout, Wave

# Coverage JSON keeps at most this many segments (the counts stay exact).
MAX_RECORDED_SEGMENTS = 200


def device_rank(rollout_id: int, device_id: int) -> bytes:
    return hashlib.sha256(f"{rollout_id}:{device_id}".encode()).digest()[:8]


def cohort_device_ids(cohort: Cohort) -> QuerySet:
    """A subquery of the cohort's device ids (usable in `pk__in` without fetching them)."""
    return cohort.devices().values("pk")


def wave_cohorts(rollout: Rollout, wave: Wave) -> list[Cohort]:
    """The cohorts a wave draws from: its own, or for "the rest" every earlier wave's cohort."""
    if wave.cohort_id is not None:
        return [wave.cohort]
    earlier = [w.cohort for w in rollout.waves.select_related("cohort").filter(index__lt=wave.index)]
    return [cohort for cohort in earlier if cohort is not None]


def cohorts_q(cohorts: list[Cohort]) -> Q:
    """Devices in any of the cohorts; an empty list selects nothing."""
    query = Q(pk__in=[])
    for cohort in cohorts:
        query |= Q(pk__in=cohort_device_ids(cohort))
    return query


def wave_size(size_kind: str, size_value: float, cohort_size: int) -> int:
    """How many devices a wave adds: a count, or a percent of its cohort (rounded up)."""
    if size_kind == Wave.SizeKind.COUNT:
        return max(int(size_value), 0)
    return min(math.ceil(cohort_size * size_value / 100 - 1e-9), cohort_size) if size_value > 0 else 0


@dataclass
class Candidate:
    id: int
    hw_model: str
    region: str
    combination_id: int | None
    installed: dict
    rank: bytes = b""

    @property
    def segment(self) -> tuple:
        return (self.hw_model, self.region, self.combination_id)


@dataclass
class Selection:
    chosen: list[Candidate]
    cohort_size: int
    eligible: int
    skipped: dict[str, int] = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)


def _targets(rollout: Rollout) -> list[tuple[int, str, str, list]]:
    """(component id, component name, version, supported hardware) per target release."""
    return [
        (t.component_id, t.component.name, t.release.version, t.release.supported_hardware)
        for t in rollout.targets.select_related("component", "release")
    ]


def to_versions_for(rollout: Rollout, targets, candidate: Candidate, rollback_from: dict[int, dict]) -> dict:
    if rollout.rollback_of_id is not None:
        return rollback_from.get(candidate.id, {})
    return {name: version for _, name, version, _ in targets}


def select_wave_devices(rollout: Rollout, wave: Wave) -> Selection:
    """Rank the eligible devices of the wave's cohort(s) and pick the wave's share of them."""
    cohorts = wave_cohorts(rollout, wave)
    pool = Device.objects.filter(cohorts_q(cohorts))
    rows = pool.values_list("id", "hw_model", "attributes__region", "combination_id", "installed")
    candidates = [Candidate(r[0], r[1] or "", str(r[2] or ""), r[3], r[4] or {}) for r in rows]
    cohort_size = len(candidates)
    targets = _targets(rollout)
    component_ids = [t[0] for t in targets]
    taken = set(Deployment.objects.filter(rollout=rollout).values_list("device_id", flat=True))
    locked = set(
        ComponentLock.objects.filter(component_id__in=component_ids, device__in=pool)
        .exclude(deployment__rollout=rollout)
        .values_list("device_id", flat=True)
    )
    rollback_from = rollback_versions(rollout) if rollout.rollback_of_id else {}
    skipped = {"already_in_rollout": 0, "already_on_target": 0, "unsupported_hardware": 0, "locked": 0}
    eligible: list[Candidate] = []
    for cand in candidates:
        if cand.id in taken:
            skipped["already_in_rollout"] += 1
        elif cand.id in locked:
            skipped["locked"] += 1
        elif any(hw and cand.hw_model not in hw for *_, hw in targets) and rollout.rollback_of_id is None:
            skipped["unsupported_hardware"] += 1
        else:
            wanted = to_versions_for(rollout, targets, cand, rollback_from)
            if not wanted or all(cand.installed.get(name) == version for name, version in wanted.items()):
                skipped["already_on_target"] += 1
                continue
            cand.rank = device_rank(rollout.pk, cand.id)
            eligible.append(cand)
    size = wave_size(wave.size_kind, wave.size_value, cohort_size)
    chosen = stratified_pick(eligible, size)
    return Selection(
        chosen=chosen,
        cohort_size=cohort_size,
        eligible=len(eligible),
        skipped=skipped,
        coverage=segment_coverage(eligible, chosen),
    )


def stratified_pick(eligible: list[Candidate], size: int) -> list[Candidate]:
    """One device per segment first (biggest segments first), then the rest in rank order."""
    ranked = sorted(eligible, key=lambda c: c.rank)
    if size >= len(ranked):
        return ranked
    by_segment: dict[tuple, list[Candidate]] = {}
    for cand in ranked:
        by_segment.setdefault(cand.segment, []).append(cand)
    # Biggest segment first; ties broken by the best rank in the segment (deterministic).
    segments = sorted(by_segment.values(), key=lambda members: (-len(members), members[0].rank))
    chosen = [members[0] for members in segments[:size]]
    picked = {c.id for c in chosen}
    for cand in ranked:
        if len(chosen) >= size:
            break
        if cand.id not in picked:
            chosen.append(cand)
            picked.add(cand.id)
    return chosen


def segment_coverage(eligible: list[Candidate], chosen: list[Candidate]) -> dict:
    present: dict[tuple, int] = {}
    for cand in eligible:
        present[cand.segment] = present.get(cand.segment, 0) + 1
    taken: dict[tuple, int] = {}
    for cand in chosen:
        taken[cand.segment] = taken.get(cand.segment, 0) + 1
    combo_ids = {seg[2] for seg in present if seg[2] is not None}
    keys = dict(Combination.objects.filter(pk__in=combo_ids).values_list("pk", "key")) if combo_ids else {}

    def label(seg: tuple) -> str:
        hw, region, combo = seg
        return f"{hw or '?'} | {region or '?'} | {keys.get(combo, '(nothing installed)')}"

    ordered = sorted(present, key=lambda seg: -present[seg])[:MAX_RECORDED_SEGMENTS]
    return {
        "segments_total": len(present),
        "segments_covered": len(taken),
        "segments": {label(seg): {"devices": present[seg], "chosen": taken.get(seg, 0)} for seg in ordered},
    }


def rollback_versions(rollout: Rollout) -> dict[int, dict]:
    """For a rollback rollout: device id → the versions it ran before the rolled-back rollout."""
    rows = Deployment.objects.filter(rollout_id=rollout.rollback_of_id).values_list("device_id", "from_versions")
    return {device_id: {k: v for k, v in versions.items() if v} for device_id, versions in rows}


def rollout_conflicts(rollout: Rollout, *, limit: int = 10) -> list[dict]:
    """Other active rollouts that target one of this rollout's components on the same devices.

    Counts both devices already locked by them and devices still in their planned cohorts
    without a finished deployment there. One query per overlapping rollout.
    """
    targets = list(rollout.targets.select_related("component"))
    components = {t.component_id: t.component.name for t in targets}
    ours = cohorts_q([w.cohort for w in rollout.waves.select_related("cohort") if w.cohort_id])
    others = (
        Rollout.objects.filter(state__in=Rollout.ACTIVE_STATES, targets__component_id__in=components)
        .exclude(pk=rollout.pk)
        .distinct()
    )
    conflicts = []
    for other in others:
        shared = sorted(
            components[cid] for cid in other.targets.filter(component_id__in=components).values_list(
                "component_id", flat=True)
        )
        theirs = cohorts_q([w.cohort for w in other.waves.select_related("cohort") if w.cohort_id])
        finished = Deployment.objects.filter(rollout=other, state__in=Deployment.FINAL_STATES, retry_at__isnull=True)
        locked = ComponentLock.objects.filter(deployment__rollout=other, component_id__in=components)
        overlap = Device.objects.filter(ours).filter(
            Q(pk__in=locked.values("device_id")) | (theirs & ~Q(pk__in=finished.values("device_id")))
        )
        count = overlap.count()
        if count:
            conflicts.append(
                {
                    "rollout": other.pk,
                    "name": other.name,
                    "state": other.state,
                    "components": shared,
                    "devices": count,
                    "sample": list(overlap.order_by("uid").values_list("uid", flat=True)[:limit]),
                }
            )
    return conflicts


def describe_conflicts(conflicts: list[dict]) -> str:
    parts = [
        f"rollout #{c['rollout']} \"{c['name']}\" ({c['state']}) targets {', '.join(c['components'])} "
        f"on {c['devices']} of the same devices (e.g. {', '.join(c['sample'][:5])})"
        for c in conflicts
    ]
    return "conflicts with " + "; ".join(parts)
