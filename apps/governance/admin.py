from django.contrib import admin

from .models import BudgetOverride, CertifiedCombination, CombinationBudget


@admin.register(CertifiedCombination)
class CertifiedCombinationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "note", "created_by", "created_at")
    readonly_fields = ("patterns", "note", "created_by", "created_at")

    def has_add_permission(self, request):  # changes go through the audited pages
        return False


@admin.register(CombinationBudget)
class CombinationBudgetAdmin(admin.ModelAdmin):
    list_display = ("scope_name", "max_combinations", "max_outside_share", "top_k", "updated_by", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(BudgetOverride)
class BudgetOverrideAdmin(admin.ModelAdmin):
    list_display = ("rollout", "created_by", "created_at", "reason")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
