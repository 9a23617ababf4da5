"""fleetweb's URLs plus the hawkBit APIs (until fleetweb/urls.py includes them; duplicates are harmless)."""

from django.urls import include, path

import fleetweb.urls
from apps.hawkbit.urls import ddi_urlpatterns, mgmt_urlpatterns

urlpatterns = [
    path("rest/v1/", include(mgmt_urlpatterns)),
    path("<str:tenant>/controller/v1/", include(ddi_urlpatterns)),
    *fleetweb.urls.urlpatterns,
]
