from django import forms

from apps.fleet.models import Cohort


class CertifyForm(forms.Form):
    patterns = forms.CharField(
        label="Versions", max_length=1000,
        help_text="component=version pairs, e.g. os=39.*, agent=1.4.2 (components not named: any version)",
    )
    note = forms.CharField(label="Note", max_length=500, required=False)


class BudgetForm(forms.Form):
    cohort = forms.ModelChoiceField(label="Scope", queryset=Cohort.objects.order_by("name"), required=False,
                                    empty_label="Whole fleet")
    max_combinations = forms.IntegerField(label="Max live combinations", min_value=1, required=False)
    max_outside_share = forms.FloatField(label="Max % of devices outside the top K", min_value=0, max_value=100,
                                         required=False)
    top_k = forms.IntegerField(label="K (top combinations)", min_value=1, max_value=100, initial=3)
    note = forms.CharField(label="Note", max_length=500, required=False)

    def clean(self):
        data = super().clean()
        if data.get("max_combinations") is None and data.get("max_outside_share") is None and not self.errors:
            raise forms.ValidationError("Set at least one limit.")
        return data
