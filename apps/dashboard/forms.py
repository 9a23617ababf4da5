from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.core.exceptions import ValidationError

from apps.fleet.cohort_query import MAX_FILTER_LENGTH, FilterError

from .selectors import AuditQuery


def caret(text: str, error: FilterError) -> dict:
    """Where a filter error is: the line it is on and the column, for a caret under the text."""
    position = max(0, min(error.position, len(text)))
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[start : end if end != -1 else len(text)]
    column = position - start
    return {
        "message": error.message,
        "position": position,
        "line": line,
        "line_number": text.count("\n", 0, position) + 1,
        "column": column + 1,
        "pad": " " * column,
    }


class CohortForm(forms.Form):
    name = forms.CharField(max_length=80)
    description = forms.CharField(max_length=300, required=False)
    filter_text = forms.CharField(
        label="Filter",
        max_length=MAX_FILTER_LENGTH,
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}),
    )

    def __init__(self, *args, explicit: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.explicit = explicit
        self.filter_caret: dict | None = None
        self.fields["filter_text"].widget.attrs["aria-describedby"] = "filter-help cohort-preview"
        if explicit:
            self.fields["filter_text"].disabled = True

    def add_filter_error(self, error: FilterError) -> None:
        self.filter_caret = caret(self.cleaned_data.get("filter_text", ""), error)
        self.add_error(
            "filter_text",
            f"{error.message} (line {self.filter_caret['line_number']}, column {self.filter_caret['column']})",
        )

    def add_service_errors(self, error: ValidationError) -> None:
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for field, errors in error.message_dict.items():
            self.add_error(field if field in self.fields else None, errors)


class AuditFilterForm(forms.Form):
    actor = forms.CharField(max_length=160, required=False)
    action = forms.ChoiceField(required=False)
    object_type = forms.ChoiceField(required=False, label="Object type")
    object_id = forms.CharField(max_length=80, required=False, label="Object id")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    # Filled in by fleet.js with the browser's time zone: the dates are the viewer's days.
    tz = forms.CharField(
        max_length=64,
        required=False,
        widget=forms.HiddenInput(attrs={"data-viewer-tz": ""}),
    )

    def __init__(self, *args, choices: dict[str, list[str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [
            ("", "any action"),
            *((a, a) for a in choices["actions"]),
        ]
        self.fields["object_type"].choices = [
            ("", "any type"),
            *((t, t) for t in choices["object_types"]),
        ]

    def clean_tz(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.cleaned_data["tz"] or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError({"until": "must be on or after the start date"})
        return data

    def query(self) -> AuditQuery:
        data = self.cleaned_data
        return AuditQuery(
            actor=data["actor"].strip(),
            action=data["action"],
            object_type=data["object_type"],
            object_id=data["object_id"].strip(),
            since=data["since"],
            until=data["until"],
            tz=data["tz"],
        )


class ReleaseChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.component.name} {obj.version}"


class RolloutForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    releases = ReleaseChoiceField(
        queryset=None, help_text="One release per component; several components make a bundle."
    )
    requires_approval = forms.BooleanField(required=False, label="Needs approval by a second person")
    settle_s = forms.IntegerField(min_value=0, initial=60, label="Settle time (s)")

    def __init__(self, *args, **kwargs):
        from apps.fleet.models import Release

        super().__init__(*args, **kwargs)
        self.fields["releases"].queryset = Release.objects.select_related("component").order_by(
            "component__position", "component__name", "-created_at"
        )
        self.fields["releases"].widget.attrs["size"] = 8


class WaveForm(forms.Form):
    name = forms.CharField(max_length=80, required=False, label="Wave name")
    cohort = forms.ModelChoiceField(queryset=None, required=False, empty_label="the rest (earlier waves' cohorts)")
    size_kind = forms.ChoiceField(choices=(("percent", "% of cohort"), ("count", "devices")), initial="percent")
    size_value = forms.FloatField(min_value=0, initial=100, label="Size")
    min_soak_s = forms.IntegerField(min_value=0, initial=600, label="Soak (s)")
    success_min_percent = forms.FloatField(min_value=0, max_value=100, initial=90, label="Min success %")
    max_failed_count = forms.IntegerField(min_value=0, required=False, label="Halt above failed devices")
    max_failed_percent = forms.FloatField(min_value=0, max_value=100, required=False, label="Halt above failed %")
    spike_gate = forms.BooleanField(required=False, initial=True, label="Halt on error spike")

    def __init__(self, *args, **kwargs):
        from apps.fleet.models import Cohort

        super().__init__(*args, **kwargs)
        self.fields["cohort"].queryset = Cohort.objects.order_by("name")

    def spec(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"] or None,
            "cohort": data["cohort"],
            "size_kind": data["size_kind"],
            "size_value": data["size_value"],
            "min_soak_s": data["min_soak_s"],
            "success_min_percent": data["success_min_percent"],
            "max_failed_count": data["max_failed_count"],
            "max_failed_percent": data["max_failed_percent"],
            "spike_gate": {"enabled": bool(data["spike_gate"])},
        }


# The first wave is always read (the service explains what it lacks); later untouched ones are skipped.
WaveFormSet = forms.formset_factory(WaveForm, extra=2, min_num=1, max_num=10)


class ReasonForm(forms.Form):
    action = forms.ChoiceField(
        choices=[(a, a) for a in ("submit", "approve", "start", "pause", "resume", "abort", "rollback", "unfreeze")]
    )
    reason = forms.CharField(max_length=500, required=False)
