from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.settings import api_settings

from . import views
from .security import ThrottledAuthenticationForm

api_v1 = [
    path("", include("catalog.api_urls")),
    path("", include("personalization.api_urls")),
    path("", include("experiments.api_urls")),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("jobs/", views.jobs, name="jobs"),
    path("audit/", views.audit_log, name="audit_log"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=ThrottledAuthenticationForm
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("catalog/", include("catalog.urls")),
    path("", include("personalization.urls")),
    path("experiments/", include("experiments.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # DRF's token view turns throttling off; keep the API rates so it cannot be used to guess
    # passwords faster than the (throttled) login form.
    path(
        "api/token/",
        ObtainAuthToken.as_view(throttle_classes=api_settings.DEFAULT_THROTTLE_CLASSES),
        name="api_token",
    ),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
]

handler403 = "recsite.views.permission_denied"
handler404 = "recsite.views.page_not_found"
handler500 = "recsite.views.server_error"
