from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from . import throttle

LOCKED = "Too many failed logins for this account from your address. Wait a while and try again."


class ThrottledAuthenticationFormMixin:
    """Says plainly that the login is locked out instead of "wrong password"."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if throttle.is_locked(username, self.request):
            throttle.failure_record(username=username, request=self.request)
            raise forms.ValidationError(LOCKED, code="throttled")
        return super().clean()


class LoginForm(ThrottledAuthenticationFormMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledAuthenticationFormMixin, AdminAuthenticationForm):
    pass
