from django.contrib import admin
from django.urls import include, path

from insights.views import digests as insights_digests
from planning import views as planning_views
from planning.views import accounts as accounts_views

admin.site.site_header = "Outside-In back-office"
admin.site.site_title = "Outside-In back-office"

urlpatterns = [
    path("", planning_views.home, name="home"),
    # Before Django's own: the same page, with hourly limits on the e-mails sent.
    path(
        "accounts/password_reset/",
        accounts_views.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("plans/", include("planning.urls")),
    path("plans/", include("insights.urls")),
    path("unsubscribe/<str:token>/", insights_digests.unsubscribe, name="unsubscribe"),
    # Outside /plans/: the invited person is not a member yet, and may not even have an account.
    path("invitations/<str:token>/", planning_views.invitation, name="invitation"),
    path(
        "invitations/<str:token>/account/",
        planning_views.invitation_account,
        name="invitation_account",
    ),
    path("admin/", admin.site.urls),
]
