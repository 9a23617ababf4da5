from django.contrib import admin

from .models import ComponentLock, Deployment, FleetFreeze, MaintenanceWindow, Rollout, RolloutRelease, Wave


class RolloutReleaseInline(admin.TabularInline):
    model = RolloutRelease
    extra = 0


class WaveInline(admin.StackedInline):
    model = Wave
    extra = 0


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "current_wave", "created_by", "created_at", "started_at")
    list_filter = ("state", "frozen")
    search_fields = ("name", "description", "halt_reason")
    inlines = [RolloutReleaseInline, WaveInline]
    # State changes go through services (pages and API), never a raw edit here.
    readonly_fields = ("state", "current_wave", "halted_at", "halt_reason", "halt_evidence", "approved_by",
                       "approved_at", "started_at", "finished_at", "frozen", "last_tick_at")


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("rollout", "device", "state", "attempts", "error_code", "updated_at")
    list_filter = ("state", "rollout")
    search_fields = ("device__uid", "error_code")
    raw_id_fields = ("device", "wave", "rollout")
    list_select_related = ("rollout", "device")


@admin.register(FleetFreeze)
class FleetFreezeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "active", "created_by", "reason")


@admin.register(ComponentLock)
class ComponentLockAdmin(admin.ModelAdmin):
    list_display = ("device", "component", "deployment")
    raw_id_fields = ("device", "deployment")


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    list_display = ("cohort", "schedule", "duration_min", "timezone", "description")
    list_select_related = ("cohort",)
