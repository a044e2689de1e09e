from __future__ import annotations

from django import forms

from .models import Membership, Plan, validate_plan_slug


class ScheduleForm(forms.ModelForm):
    retest_weekday = forms.TypedChoiceField(
        label="Weekday",
        coerce=int,
        choices=[(i, day.capitalize()) for i, day in enumerate(
            ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
        )],
        help_text="For a weekly re-test.",
    )

    class Meta:
        model = Plan
        fields = ["retest_cadence", "retest_weekday", "retest_time", "retest_timezone"]
        labels = {
            "retest_cadence": "Re-test",
            "retest_time": "Time of day",
            "retest_timezone": "Time zone",
        }
        widgets = {"retest_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M")}
        help_texts = {"retest_timezone": "For example Europe/Paris, America/New_York or UTC."}


class EmailPreferencesForm(forms.ModelForm):
    receive_digests = forms.BooleanField(
        label="E-mail me when a scheduled re-test changes an assumption's status", required=False
    )

    class Meta:
        model = Membership
        fields = ["all_quiet_digest"]
        labels = {"all_quiet_digest": "Also e-mail me once a week when nothing changed"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["receive_digests"].initial = not self.instance.digest_opt_out

    def save(self, commit: bool = True) -> Membership:
        self.instance.digest_opt_out = not self.cleaned_data["receive_digests"]
        return super().save(commit)



class NewPlanForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200, required=False)
    slug = forms.SlugField(
        label="Short name for links", max_length=80, required=False,
        help_text="Letters, digits and hyphens, e.g. fy2027-growth.",
        validators=[validate_plan_slug],
    )
    plan_file = forms.FileField(
        label="Or start from a plan file", required=False,
        help_text="A plan exported from Outside-In (JSON).",
    )

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("plan_file") and not (cleaned.get("name") and cleaned.get("slug")):
            raise forms.ValidationError("Give the plan a name and a short name, or choose a plan file.")
        slug = cleaned.get("slug")
        if slug and not cleaned.get("plan_file") and Plan.objects.filter(slug=slug).exists():
            self.add_error("slug", "A plan already uses this short name; choose another.")
        return cleaned
