from django.contrib import admin, messages

from .models import Artifact, Cohort, Combination, Component, Device, EnrollmentSecret, HealthReport, Release, SpreadSample
from .services import device_token_revoke, device_token_rotate, enrollment_secret_create


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "requires_reboot", "position")
    list_filter = ("kind", "requires_reboot")
    search_fields = ("name", "description")


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ("component", "version", "created_at")
    list_filter = ("component",)
    search_fields = ("version", "notes")
    inlines = [ArtifactInline]


@admin.register(Combination)
class CombinationAdmin(admin.ModelAdmin):
    list_display = ("key", "device_count", "first_seen", "last_seen")
    search_fields = ("key",)
    readonly_fields = ("key", "versions", "device_count", "first_seen", "last_seen")


@admin.action(description="Rotate token (the new token is shown once)")
def rotate_tokens(modeladmin, request, queryset):
    for device in queryset[:20]:
        token = device_token_rotate(device=device, actor=request.user)
        modeladmin.message_user(request, f"{device.uid}: new token {token}", messages.WARNING)


@admin.action(description="Revoke token (the device gets 401 at once)")
def revoke_tokens(modeladmin, request, queryset):
    for device in queryset:
        device_token_revoke(device=device, actor=request.user, reason="revoked in admin")
    modeladmin.message_user(request, f"revoked {queryset.count()} device token(s)")


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("uid", "hw_model", "combination", "last_seen", "token_revoked")
    list_filter = ("hw_model", "token_revoked")
    search_fields = ("uid", "hw_model")
    readonly_fields = ("token_hash", "last_seq", "last_seen", "checkin_count", "combination", "installed")
    actions = [rotate_tokens, revoke_tokens]
    list_select_related = ("combination",)


@admin.register(EnrollmentSecret)
class EnrollmentSecretAdmin(admin.ModelAdmin):
    list_display = ("name", "uses_left", "expires_at", "revoked", "created_at")
    list_filter = ("revoked",)
    readonly_fields = ("secret_hash", "created_by")
    fields = ("name", "uses_left", "expires_at", "revoked", "default_tags", "secret_hash", "created_by")

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        # New secrets are generated here and shown once; only the hash is stored.
        record, secret = enrollment_secret_create(
            name=obj.name, actor=request.user, uses=obj.uses_left, expires_at=obj.expires_at,
            default_tags=obj.default_tags or (),
        )
        obj.pk = record.pk
        obj.secret_hash = record.secret_hash
        self.message_user(request, f"Enrollment secret for {obj.name} (shown once): {secret}", messages.WARNING)


@admin.register(HealthReport)
class HealthReportAdmin(admin.ModelAdmin):
    list_display = ("device", "seq", "received_at", "crashes", "failed_health_checks", "reboots")
    search_fields = ("device__uid",)
    list_select_related = ("device",)
    raw_id_fields = ("device", "combination")


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "filter_text", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "filter_text", "description")
    filter_horizontal = ("members",)


@admin.register(SpreadSample)
class SpreadSampleAdmin(admin.ModelAdmin):
    list_display = ("at", "devices", "online", "combinations")
