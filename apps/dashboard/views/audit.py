from django.core.paginator import Paginator
from django.shortcuts import render

from apps.accounts.roles import VIEWER, role_required

from .. import selectors
from ..forms import AuditFilterForm


@role_required(VIEWER)
def audit_log(request):
    form = AuditFilterForm(request.GET or None, choices=selectors.audit_filter_choices())
    query = form.query() if form.is_valid() else selectors.AuditQuery()
    page = Paginator(selectors.audit_search(query), 50).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    return render(
        request,
        "dashboard/audit.html",
        {"form": form, "page": page, "params": params.urlencode()},
    )
