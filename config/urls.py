from django.contrib import admin
from django.urls import include, path

from insights import views as insights_views
from planning import views as planning_views

admin.site.site_header = "Outside-In back-office"
admin.site.site_title = "Outside-In back-office"

urlpatterns = [
    path("", planning_views.home, name="home"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("plans/", include("planning.urls")),
    path("plans/", include("insights.urls")),
    path("unsubscribe/<str:token>/", insights_views.unsubscribe, name="unsubscribe"),
    path("admin/", admin.site.urls),
]
