from django.contrib import admin

from .models import Alert, WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("created_at", "severity", "kind", "title", "rollout", "acknowledged_by", "acknowledged_at")
    list_filter = ("kind", "severity", ("acknowledged_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "detail", "dedupe_key")
    raw_id_fields = ("rollout",)
    # Acknowledging goes through alert_acknowledge (audited, broadcast), never a raw edit here.
    readonly_fields = ("acknowledged_by", "acknowledged_at", "ack_note", "dedupe_key", "evidence", "created_at")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "enabled", "kinds", "created_at")
    # The dashboard page (/alerts/webhooks/) is the audited way to change endpoints; the secret
    # is not shown here.
    exclude = ("secret",)
    readonly_fields = ("name", "url", "enabled", "kinds", "created_by", "created_at")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    readonly_fields = ("number", "started_at", "duration_ms", "status_code", "error", "response_excerpt",
                       "next_retry_at")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "endpoint", "event", "alert", "state", "attempts", "next_retry_at")
    list_filter = ("state", "event", "endpoint")
    raw_id_fields = ("alert",)
    readonly_fields = ("delivery_id", "endpoint", "alert", "event", "body", "state", "attempts", "created_at",
                       "last_attempt_at", "next_retry_at", "delivered_at")
    inlines = [WebhookAttemptInline]
