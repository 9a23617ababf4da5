from django import forms

from .models import Alert


class WebhookEndpointForm(forms.Form):
    """Admin input for an endpoint; the service re-checks it and names the field on a failure."""

    name = forms.CharField(max_length=80)
    url = forms.URLField(label="URL", max_length=500, assume_scheme="https",
                         widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/fleetweb"}))
    secret = forms.CharField(
        max_length=200, required=False, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="At least 16 characters. Leave empty to generate one (new endpoint) or keep the current one.",
    )
    kinds = forms.MultipleChoiceField(
        choices=Alert.Kind.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None checked: every kind.",
    )
    enabled = forms.BooleanField(required=False, initial=True)
