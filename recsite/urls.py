from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import api, token_views, views
from .security import ThrottledAuthenticationForm

api_v1 = [
    path("", include("catalog.api_urls")),
    path("", include("personalization.api_urls")),
    path("", include("experiments.api_urls")),
    path("impact", api.Impact.as_view(), name="api_impact"),
]

urlpatterns = [
    # First: the API's hot paths (recommendations, ingestion) then skip every page's pattern.
    path("api/v1/", include(api_v1)),
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("jobs/", views.jobs, name="jobs"),
    path("audit/", views.audit_log, name="audit_log"),
    path("impact/", views.impact_page, name="impact"),
    path("account/", views.account_settings, name="account_settings"),
    path("help/", views.help_page, name="help"),
    path("tokens/", token_views.api_tokens, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", token_views.api_token_revoke, name="api_token_revoke"),
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
    # A new hashed token for a user name and password (recsite.tokens; throttled like the API).
    path("api/token/", token_views.ObtainToken.as_view(), name="api_token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
]

handler403 = "recsite.views.permission_denied"
handler404 = "recsite.views.page_not_found"
handler500 = "recsite.views.server_error"
