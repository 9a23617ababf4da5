from django.contrib import admin

from .models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("created_at", "severity", "kind", "title", "rollout", "acknowledged_by", "acknowledged_at")
    list_filter = ("kind", "severity", ("acknowledged_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "detail", "dedupe_key")
    raw_id_fields = ("rollout",)
    # Acknowledging goes through alert_acknowledge (audited, broadcast), never a raw edit here.
    readonly_fields = ("acknowledged_by", "acknowledged_at", "ack_note", "dedupe_key", "evidence", "created_at")
